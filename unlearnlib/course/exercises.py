"""The course's exercises: stubs a student fills in, checks that answer with a hint, and the
worked solutions the course runner puts in place of the stubs.

An exercise in a notebook is three cells: a markdown cell `### Exercise ...`, a stub cell
whose first line is `# EXERCISE: <id>` and which assigns `...` to the names to fill, and a
check cell that calls `check("<id>", name=name, ...)`. `check` prints one line and never
raises in a notebook, so a student's unfinished cell does not end in a traceback:

* "Exercise 1: passed" when the answer is right;
* "Exercise 1, not yet: <what is wrong>. Hint: <how to get there>" when it is wrong;
* "Exercise 1, not attempted yet: replace the ... of <names> in the cell above" while a
  stub is untouched.

Worked solutions live apart, in notebooks/solutions/NN_name.py, one `# %% EXERCISE: <id>`
section per stub. `fill_solutions` swaps them into the stub cells; the course runner
(`runner.run_course`, hence `make goldens` and the goldens nbval re-executes) runs every
notebook that way, with STRICT_ENV set so that a solution that fails its check fails the run.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # nbformat and pandas are only type hints here: checks stay light to import
    import pandas as pd
    from nbformat import NotebookNode

#: "1" makes a check that does not pass raise `ExerciseFailed` (the course runner sets it).
STRICT_ENV = "UNLEARNLIB_STRICT_EXERCISES"
#: The first line of a stub cell (in a notebook) and of a solution's section (in its file).
STUB_MARKER = re.compile(r"^# EXERCISE: (?P<id>[\w-]+)\s*$", re.M)
SOLUTION_MARKER = re.compile(r"^# %% EXERCISE: (?P<id>[\w-]+)\s*$", re.M)
#: Where a notebook's worked solutions are, relative to its folder.
SOLUTIONS_DIR = "solutions"


class NotYet(Exception):
    """Raised by a check function: what is wrong, and a hint more specific than the default."""

    def __init__(self, problem: str, hint: str | None = None):
        super().__init__(problem)
        self.problem = problem
        self.hint = hint


class ExerciseFailed(AssertionError):
    """A check that did not pass, under STRICT_ENV (a batch run with the worked solutions)."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its title as the notebook's heading names it, the hint a wrong answer
    gets unless its check has a better one, and the check (answers in, pass detail out)."""

    title: str
    hint: str
    check: Callable[..., str]


#: Every exercise of the course by id (the id its stub cell and solution section carry).
EXERCISES: dict[str, Exercise] = {}


def _exercise(exercise_id: str, title: str, hint: str
              ) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register a check function under `exercise_id`."""
    def register(function: Callable[..., str]) -> Callable[..., str]:
        EXERCISES[exercise_id] = Exercise(title, hint, function)
        return function
    return register


def check(exercise_id: str, **values: Any) -> None:
    """Check an exercise's answers (and the values they are checked against) and print the
    verdict: passed, not yet (with a hint), or not attempted (a `...` is left)."""
    exercise = EXERCISES[exercise_id]
    untouched = [name for name, value in values.items() if value is Ellipsis]
    passed = False
    if untouched:
        message = (f"{exercise.title}, not attempted yet: replace the ... of "
                   f"{', '.join(untouched)} in the cell above, then run both cells again.")
    else:
        try:
            detail = exercise.check(**values)
        except NotYet as wrong:
            message = (f"{exercise.title}, not yet: {wrong.problem}. "
                       f"Hint: {wrong.hint or exercise.hint}")
        except Exception as error:  # an answer of the wrong kind: a verdict, not a traceback
            message = (f"{exercise.title}, not yet: checking it raised "
                       f"{type(error).__name__}: {error}. Hint: {exercise.hint}")
        else:
            passed = True
            message = f"{exercise.title}: passed" + (f" ({detail})" if detail else "")
    print(message)
    if not passed and os.environ.get(STRICT_ENV) == "1":
        raise ExerciseFailed(message)


# --------------------------------------------------------------------------- solutions


def stub_id(source: str) -> str | None:
    """The exercise id of a stub cell (its first line is `# EXERCISE: <id>`), else None."""
    match = STUB_MARKER.match(source)
    return match["id"] if match else None


def solutions_file(notebook: str | Path) -> Path:
    """The worked solutions of a notebook: solutions/NN_name.py beside it."""
    notebook = Path(notebook)
    return notebook.parent / SOLUTIONS_DIR / f"{notebook.stem}.py"


def read_solutions(path: str | Path) -> dict[str, str]:
    """A solutions file's sections by exercise id (the text before the first is a preamble)."""
    text = Path(path).read_text()
    matches = list(SOLUTION_MARKER.finditer(text))
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return {m["id"]: text[m.end():end].strip() for m, end in zip(matches, ends, strict=True)}


def fill_solutions(notebook: NotebookNode, solutions: dict[str, str]) -> NotebookNode:
    """Put each stub cell's worked solution in its place, below the `# EXERCISE:` line.

    Raises KeyError naming a stub without a solution: a batch run must never meet a `...`.
    """
    for cell in notebook.cells:
        exercise_id = stub_id(cell.source) if cell.cell_type == "code" else None
        if exercise_id is None:
            continue
        if exercise_id not in solutions:
            raise KeyError(f"No worked solution for exercise {exercise_id!r}: add a "
                           f"'# %% EXERCISE: {exercise_id}' section to the solutions file.")
        cell.source = f"# EXERCISE: {exercise_id}\n{solutions[exercise_id]}"
    return notebook


def with_solutions(path: str | Path) -> NotebookNode:
    """A notebook read from `path` with its worked solutions filled in (none needed when it
    has no stub)."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    file = solutions_file(path)
    return fill_solutions(notebook, read_solutions(file) if file.is_file() else {})


# --------------------------------------------------------------------------- the checks


def _close(value: Any, expected: float) -> bool:
    """Equal up to rounding; relative only, since forget qualities of 1e-20 are not 0."""
    return isinstance(value, numbers.Real) and math.isclose(value, expected, rel_tol=1e-9)


def _expect(name: str, value: Any, expected: Any, whose: str, hint: str | None = None
            ) -> None:
    """Raise NotYet unless `value` equals `expected` (numbers up to rounding); `whose` says
    what the expected value is."""
    if isinstance(expected, numbers.Real):
        if not _close(value, expected):
            raise NotYet(f"{name} is {value!r}, but {whose} is {expected:.4g}", hint)
    elif value != expected:
        raise NotYet(f"{name} is {value!r}, but {whose} is {expected!r}", hint)


def _same_series(answer: Any, expected: pd.Series, name: str) -> None:
    """Raise NotYet unless `answer` is a Series with `expected`'s index and values."""
    import pandas as pd

    if not isinstance(answer, pd.Series):
        raise NotYet(f"{name} should be a pandas Series indexed by method, "
                     f"not {type(answer).__name__}")
    if sorted(answer.index) != sorted(expected.index):
        raise NotYet(f"{name} is indexed by {list(answer.index)}, expected the methods "
                     f"{list(expected.index)}", "group by the `method` column")
    difference = (answer.reindex(expected.index).astype(float) - expected).abs().max()
    if not difference < 1e-9:
        raise NotYet(f"{name} differs from the expected values by up to {difference:.3g}")


@_exercise("profile", "Exercise 1", "get_profile('tiny', unlearn_epochs=..., learning_rate=...) "
           "derives a variant of the tiny profile")
def _profile(my_profile: Any) -> str:
    from unlearnlib.profiles import PROFILES, Profile

    if not isinstance(my_profile, Profile):
        raise NotYet(f"my_profile should be a Profile, not {type(my_profile).__name__}")
    if (my_profile.unlearn_epochs, my_profile.learning_rate) != (5, 5e-4):
        raise NotYet(f"my_profile unlearns for {my_profile.unlearn_epochs} epochs at "
                     f"{my_profile.learning_rate:g}, not 5 epochs at 5e-4")
    tiny = PROFILES["tiny"]
    changed = [f.name for f in fields(Profile) if f.name not in {"unlearn_epochs",
               "learning_rate"} and getattr(my_profile, f.name) != getattr(tiny, f.name)]
    if changed:
        raise NotYet(f"my_profile also changes {', '.join(changed)}",
                     "start from the tiny profile and override only the two fields")
    return ""


@_exercise("forget-share", "Exercise 2", "the share of rows is len(splits['forget10']) divided "
           "by len(splits['full'])")
def _forget_share(share: Any) -> str:
    from unlearnlib.data.tofu import FORGET_PERCENT

    expected = FORGET_PERCENT["forget10"] / 100
    if _close(share, expected * 100):
        raise NotYet(f"share is {share:g}, a percentage", "store a fraction between 0 and 1")
    _expect("share", share, expected, "forget10's share of full's rows")
    return f"forget10 is {share:.0%} of full"


@_exercise("last-rows", "Exercise 1", "n = len(full) * FORGET_PERCENT[FORGET_SPLIT] // 100 rows, "
           "taken from the end: full.select(range(len(full) - n, len(full)))")
def _last_rows(last_rows: Any, forget: Any) -> str:
    if len(last_rows) != len(forget):
        raise NotYet(f"last_rows has {len(last_rows)} rows, the forget split {len(forget)}")
    if list(last_rows["question"]) != list(forget["question"]):
        raise NotYet("last_rows has the right number of rows but other questions",
                     "take the rows at the end of full, not at its start")
    if list(last_rows["answer"]) != list(forget["answer"]):
        raise NotYet("last_rows has the forget questions but other answers")
    return f"the forget split is the last {len(last_rows)} rows of full"


@_exercise("decode-labels", "Exercise 2", "keep the label ids that are not IGNORE_INDEX (-100) "
           "and decode them with tokenizer.decode")
def _decode_labels(learned: Any, answer: str, eos_token: str) -> str:
    expected = answer.strip() + eos_token
    if not isinstance(learned, str):
        raise NotYet(f"learned should be text, not {type(learned).__name__}")
    if learned == answer.strip():
        raise NotYet("learned is the answer without the end-of-turn token",
                     "the end-of-turn token is labelled too: decode without skipping "
                     "special tokens")
    if learned != expected and expected in learned:
        raise NotYet("learned holds more than the answer",
                     "the prompt's tokens are labelled -100: drop them before decoding")
    _expect("learned", learned, expected, "the answer followed by the end-of-turn token")
    return ""


@_exercise("fq-by-hand", "Exercise", "forget_quality(truth_ratios['full'], "
           "truth_ratios['retain']): the model's truth ratios first, the retain model's second")
def _fq_by_hand(fq_full: Any, fq_retain: Any, summary_fq: float) -> str:
    _expect("fq_retain", fq_retain, 1.0, "the p-value of a sample against itself",
            "two identical samples have KS statistic 0, hence p-value 1: "
            "forget_quality(truth_ratios['retain'], truth_ratios['retain'])")
    _expect("fq_full", fq_full, summary_fq, "the evaluation's forget quality")
    return ""


@_exercise("weight-tenth", "Exercise", "2 sigmoid(beta r) = 0.1 means sigmoid(beta r) = 0.05, "
           "so beta r = log(0.05 / 0.95)")
def _weight_tenth(r_tenth: Any, beta: float) -> str:
    import torch

    from unlearnlib.train.losses import npo_loss

    log_pi = torch.tensor([float(r_tenth)], requires_grad=True)
    npo_loss(log_pi, torch.zeros(1), beta).backward()
    weight = log_pi.grad.item()
    if r_tenth > 0:
        raise NotYet(f"at r = {r_tenth:.3g} the weight is {weight:.3g}",
                     "the weight falls as the answer becomes less likely than under the "
                     "reference, so r is negative")
    if abs(weight - 0.1) > 1e-6:
        raise NotYet(f"at r = {r_tenth:.3g} the autograd weight is {weight:.4g}, not 0.1")
    return f"r = {r_tenth:.2f}"


@_exercise("retain-drop", "Exercise 1", "start['retain_prob'] - final['retain_prob'] is the drop "
           "(first point minus last), and its idxmax() the method that lost the most")
def _retain_drop(retain_drop: Any, paid_most: Any, start: pd.DataFrame,
                 final: pd.DataFrame) -> str:
    expected = start["retain_prob"] - final["retain_prob"]
    if hasattr(retain_drop, "sub") and (retain_drop + expected).abs().max() < 1e-9:
        raise NotYet("retain_drop has the wrong sign", "a drop is first minus last: "
                     "start['retain_prob'] - final['retain_prob']")
    _same_series(retain_drop, expected, "retain_drop")
    _expect("paid_most", paid_most, expected.idxmax(), "the method that lost the most",
            "retain_drop.idxmax() names the method with the largest drop")
    return ""


@_exercise("fq-peak", "Exercise 2", "for each method, the epoch of the row with the highest "
           "forget_quality: history.loc[history.groupby('method')['forget_quality'].idxmax()]")
def _fq_peak(peak_epoch: Any, history: pd.DataFrame) -> str:
    curves = history.reset_index(drop=True)
    peaks = curves.loc[curves.groupby("method", sort=False)["forget_quality"].idxmax()]
    _same_series(peak_epoch, peaks.set_index("method")["epoch"], "peak_epoch")
    return ""


@_exercise("harmonic-mean", "Exercise 1", "a harmonic mean is len(c) / (1 / c).sum(), "
           "with c = components['npo']")
def _harmonic_mean(mu_npo: Any, components: pd.Series, model_utility: float) -> str:
    if _close(mu_npo, float(components.mean())):
        raise NotYet(f"mu_npo = {mu_npo:.4g} is the arithmetic mean of the nine components",
                     "the harmonic mean averages the reciprocals: len(c) / (1 / c).sum()")
    _expect("mu_npo", mu_npo, model_utility, "the summary's model_utility")
    return ""


@_exercise("noise-floor", "Exercise 2", "compare each seed's forget quality with the noise "
           "floor's and take the mean of the booleans: (seeds >= floor).mean()")
def _noise_floor(share_at_floor: Any, seed_fq: pd.Series, floor_fq: float) -> str:
    expected = float((seed_fq >= floor_fq).mean())
    if _close(share_at_floor, expected * len(seed_fq)) and len(seed_fq) > 1 and expected:
        raise NotYet(f"share_at_floor is {share_at_floor:g}, a count of seeds",
                     "divide by the number of seeds, or take the mean of the booleans")
    _expect("share_at_floor", share_at_floor, expected, "the share of seeds at the floor")
    return ""


@_exercise("format-leak", "Exercise", "merge npo's and retain's format_shift records on probe, "
           "fact_id and seed; a fact is novel when some npo probe recalls it and the retain "
           "model's same probe does not; take any() per fact, then the mean")
def _format_leak(npo_format_leak: Any, records: pd.DataFrame, expected: float) -> str:
    shifted = records[(records["family"] == "format_shift") & (records["model"] == "npo")]
    raw_rate = float(shifted.groupby("fact_id")["recalled"].any().mean())
    if _close(npo_format_leak, raw_rate) and not _close(raw_rate, expected):
        raise NotYet(f"npo_format_leak = {raw_rate:.3g} is npo's recall rate, retain's "
                     "recalls included", "count a fact only when the retain model's probe "
                     "with the same name and seed did not recall it")
    _expect("npo_format_leak", npo_format_leak, expected, "the audit's estimate")
    return ""


@_exercise("rank-1", "Exercise 1", "report.table.sort_values(['forget_quality', "
           "'model_utility'], ascending=False) puts the winner first; take its point")
def _rank_1(my_best: Any, table: pd.DataFrame, best: str) -> str:
    if my_best == table.loc[table["forget_quality"].idxmin(), "point"] != best:
        raise NotYet(f"{my_best!r} has the lowest forget quality",
                     "sort in descending order: ascending=False")
    _expect("my_best", my_best, best, "rank 1")
    return ""


@_exercise("privleak", "Exercise 2", "closest to 0 is the smallest absolute value: "
           "report.table.loc[report.table['privleak'].abs().idxmin(), 'point']")
def _privleak(closest_to_zero: Any, table: pd.DataFrame) -> str:
    expected = table.loc[table["privleak"].abs().idxmin(), "point"]
    if closest_to_zero == table.loc[table["privleak"].idxmin(), "point"] != expected:
        raise NotYet(f"{closest_to_zero!r} has the most negative privleak, not the one "
                     "nearest 0", "compare absolute values: .abs()")
    _expect("closest_to_zero", closest_to_zero, expected, "the point nearest 0")
    return ""
