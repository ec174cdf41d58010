"""The course as a batch job: run the notebooks in order with papermill, time them, report.

`run_course` executes `notebooks/NN_*.ipynb` one after the other (a later notebook reuses
what an earlier one trained), each in a fresh `python3` kernel whose environment is set
before it starts: offline for the `tiny` profile, progress bars off. It writes every
executed notebook and a `summary.json` of wall times to the output folder; when a cell
fails it stops, names the notebook and the cell, and keeps the partial notebook. It runs every
notebook with the exercises' worked solutions (notebooks/solutions/) in place of the stubs
a student fills in (`exercises.fill_solutions`), so each check cell shows a passing answer.

What the notebooks and their hygiene tests share (the repository behind the Colab badges,
the kernel name) is defined here once, so they cannot disagree; what runs inside a
notebook's kernel is in `course.notebook`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearnlib.course.exercises import with_solutions
from unlearnlib.course.notebook import course_environment
from unlearnlib.paths import PACKAGE_DIR, REPO_ROOT
from unlearnlib.profiles import Profile, get_profile

if TYPE_CHECKING:  # nbformat's import costs seconds, paid only by the runner, not by notebooks
    from nbformat import NotebookNode

#: The notebooks a wheel carries (in a checkout, a link to notebooks/).
SHIPPED_NOTEBOOKS = PACKAGE_DIR / "course_notebooks"
#: Where the course lives on GitHub (a placeholder organisation until it is published).
GITHUB_REPO = "unlearnlib-course/unlearnlib"
#: The kernel papermill and nbval start; `make install` registers the venv's as `python3`.
KERNEL_NAME = "python3"
#: Batch kernels keep their own log quiet: ipykernel 7 warns on every start that its local
#: TCP sockets are unencrypted and logs the interrupt papermill may send at shutdown, lines
#: that land in the runner's (or a sweep cell's) output. A failing cell is still reported.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)
#: papermill writes this tag on the cell it injects after the `parameters` cell.
INJECTED_TAG = "injected-parameters"
#: Metadata that changes on every run (timings, paths), removed from golden notebooks.
VOLATILE_METADATA = ("papermill", "execution")


def _has_notebooks(folder: Path) -> bool:
    return any(folder.glob("[0-9][0-9]_*.ipynb"))


def notebooks_dir(folder: str | Path | None = None) -> Path:
    """Where the course's notebooks are: `folder` if given, else the checkout's notebooks/,
    else ./notebooks beside the caller, else the copy shipped in the package (a plain
    install has no checkout)."""
    if folder is not None:
        candidates = [Path(folder).expanduser()]
    else:
        candidates = [REPO_ROOT / "notebooks"] if REPO_ROOT is not None else []
        candidates += [Path.cwd() / "notebooks", SHIPPED_NOTEBOOKS]
    for candidate in candidates:
        if candidate.is_dir() and _has_notebooks(candidate):
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"No course notebooks (NN_name.ipynb) in {looked}. Pass the notebooks/ folder of a clone "
        f"of https://github.com/{GITHUB_REPO} with --notebooks DIR (notebooks=DIR in Python), "
        "or run from the folder that holds notebooks/.")


def course_notebooks(folder: str | Path | None = None,
                     only: Sequence[str] | None = None) -> list[Path]:
    """The course's `NN_name.ipynb` notebooks in order; `only` keeps those numbered e.g. "01"."""
    folder = notebooks_dir(folder)
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not only:
        return found
    selected = {n: [p for p in found if p.name.startswith(f"{n}_") or p.stem == n] for n in only}
    missing = [n for n, paths in selected.items() if not paths]
    if missing:
        raise ValueError(f"No notebook numbered {missing} in {folder}. "
                         f"Available: {', '.join(p.stem for p in found)}.")
    return [p for p in found if any(p in paths for paths in selected.values())]


@dataclass(frozen=True)
class NotebookRun:
    """One notebook of a batch run: wall time, status ("ok" or "failed"), output path."""

    notebook: str
    seconds: float
    status: str
    output: str
    error: str | None = None


class NotebookFailed(RuntimeError):
    """A cell raised; the message names notebook and cell, `runs` holds the table so far."""

    def __init__(self, message: str, runs: list[NotebookRun]):
        super().__init__(message)
        self.runs = runs


@contextlib.contextmanager
def temporary_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (kernels inherit them), then restore."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def ctrl_c_flag() -> Iterator[threading.Event]:
    """An event set by Ctrl-C, which still raises KeyboardInterrupt as usual.

    Python ignores a KeyboardInterrupt raised inside a finaliser or a weakref callback; the
    event lets a batch run (course, sweep) stop before its next notebook all the same.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers belong to the main thread
        return

    def interrupt(signum: int, frame: Any) -> None:
        stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _failure_message(notebook: Path, output: Path, error: Exception) -> str:
    """Which notebook and cell failed and why; papermill's error carries the cell."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        first_line = next((line for line in error.source.splitlines() if line.strip()), "")
        where = (f"code cell In [{error.exec_count}] (cell {error.cell_index} of the executed "
                 f"notebook, starting {first_line.strip()[:70]!r})")
        why = f"{error.ename}: {error.evalue}"
    else:
        where, why = "the kernel", f"{type(error).__name__}: {error}"
    return (f"{notebook.name} failed in {where}: {why}\n"
            f"The partial output is in {output}; open it to see the traceback.")


def strip_volatile(notebook: NotebookNode) -> NotebookNode:
    """Remove run-dependent metadata (papermill timings and paths, execution timestamps).

    The cell papermill injects gets a fixed id instead of a random one.
    """
    for holder in (notebook, *notebook.cells):
        for key in VOLATILE_METADATA:
            holder.metadata.pop(key, None)
    for cell in notebook.cells:
        if INJECTED_TAG in cell.metadata.get("tags", []):
            cell.id = INJECTED_TAG
    return notebook


def _finish_output(output: Path, source: Path, strip: bool) -> None:
    """Name the course notebook as the executed one's papermill input (papermill ran a copy
    with the solutions filled in), or, with `strip`, remove the volatile metadata."""
    import nbformat

    notebook = nbformat.read(output, as_version=4)
    if strip:
        strip_volatile(notebook)
    else:
        notebook.metadata.papermill["input_path"] = str(source)
    nbformat.write(notebook, output)


def summary_table(runs: Sequence[NotebookRun]) -> str:
    """Wall time per notebook and the total, as aligned text."""
    width = max([len("notebook"), *(len(r.notebook) for r in runs)])
    lines = [f"{'notebook':<{width}}  {'seconds':>8}  status", "-" * (width + 18)]
    lines += [f"{r.notebook:<{width}}  {r.seconds:>8.1f}  {r.status}" for r in runs]
    lines.append(f"{'total':<{width}}  {sum(r.seconds for r in runs):>8.1f}")
    return "\n".join(lines)


def write_summary(out_dir: Path, profile: str, parameters: Mapping[str, Any],
                  runs: Sequence[NotebookRun]) -> None:
    """Write ``out_dir/summary.json``: the profile, parameters, machine, and each run's time."""
    summary = {
        "profile": profile,
        "parameters": dict(parameters),
        "cpu_count": os.cpu_count(),
        "total_seconds": round(sum(r.seconds for r in runs), 1),
        "status": "ok" if all(r.status == "ok" for r in runs) else "failed",
        "notebooks": [asdict(r) for r in runs],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


@contextlib.contextmanager
def _keep_finished(out_dir: Path, profile: str, parameters: Mapping[str, Any],
                   runs: list[NotebookRun], paths: Sequence[Path]) -> Iterator[None]:
    """On Ctrl-C, write summary.json for the notebooks that finished and say what to rerun."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        write_summary(out_dir, profile, parameters, runs)
        left = " ".join(f"--only {p.name[:2]}" for p in paths[len(runs):])
        raise KeyboardInterrupt(
            f"{len(runs)} finished notebook(s) and summary.json are in {out_dir}; run the rest "
            f"with the same command and {left}") from interrupt


def _execute(path: Path, solved: NotebookNode, output: Path, parameters: Mapping[str, Any],
             strip: bool) -> tuple[NotebookRun, Exception | None]:
    """Run one notebook (its exercises solved) with the parameters it declares, timed."""
    import nbformat
    import papermill

    error: Exception | None = None
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as folder:
            filled = Path(folder) / path.name
            nbformat.write(solved, filled)
            own = {name: value for name, value in parameters.items()
                   if name in papermill.inspect_notebook(str(path))}
            papermill.execute_notebook(str(filled), str(output), parameters=own,
                                       kernel_name=KERNEL_NAME, progress_bar=False,
                                       extra_arguments=list(KERNEL_ARGUMENTS))
    except Exception as caught:  # recorded, then raised by the caller with the cell named
        error = caught
    seconds = time.perf_counter() - start
    message = _failure_message(path, output, error) if error else None
    if output.is_file():
        _finish_output(output, path, strip)
    return NotebookRun(path.stem, round(seconds, 1), "failed" if error else "ok", str(output),
                       message), error


def run_course(profile: str = "tiny", out_dir: str | Path = "build/executed",
               only: Sequence[str] | None = None, parameters: Mapping[str, Any] | None = None,
               notebooks: str | Path | None = None, strip: bool = False,
               progress: bool = True) -> list[NotebookRun]:
    """Execute the course's notebooks in order with papermill; returns one `NotebookRun` each.

    Every notebook gets PROFILE=`profile` plus those of `parameters` it declares (e.g. SEED
    goes to the notebooks that unlearn), all checked first against the
    notebooks' own parameters (`check_parameters`), and its exercises' worked solutions
    (`exercises.with_solutions`; a stub without one fails before any kernel starts).
    `notebooks` is the folder (default: see `notebooks_dir`). `strip` removes volatile
    metadata from the outputs (for golden notebooks). Raises `NotebookFailed` at the first
    failing notebook, after writing its partial output and summary.json.
    """
    parameters = {"PROFILE": profile, **(parameters or {})}
    if parameters["PROFILE"] != profile:
        raise ValueError("Pass the profile with profile=... (--profile), not as a parameter.")
    paths = course_notebooks(notebooks, only)
    check_parameters(paths, parameters)
    # An unknown or unavailable profile fails before --out is created.
    settings = get_profile(profile, **parameters.get("PROFILE_OVERRIDES") or {})
    solved = {path: with_solutions(path) for path in paths}
    if progress:
        print(f"notebooks from {paths[0].parent}", flush=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs: list[NotebookRun] = []
    error: Exception | None = None
    with (temporary_environment(course_environment(settings)), ctrl_c_flag() as stop,
          _keep_finished(out_dir, profile, parameters, runs, paths)):
        for path in paths:
            if stop.is_set():  # a Ctrl-C that landed where Python had to ignore it
                raise KeyboardInterrupt
            if progress:
                print(f"running {path.name} ...", flush=True)
            run, error = _execute(path, solved[path], out_dir / path.name, parameters, strip)
            runs.append(run)
            if error:
                break
    write_summary(out_dir, profile, parameters, runs)
    if progress:
        print(summary_table(runs))
        print(f"executed notebooks and summary.json are in {out_dir}")
    if error:
        raise NotebookFailed(runs[-1].error, runs) from error
    return runs


def _parameter_rules() -> dict[str, Callable[[Any, str], Any]]:
    """What a notebook parameter of each name must hold (a list is checked value by value)."""
    from unlearnlib.checks import (
        check_at_least_one,
        check_choice,
        check_learning_rate,
        check_positive,
    )
    from unlearnlib.data.tofu import FORGET_PERCENT
    from unlearnlib.models.loading import check_model_folder
    from unlearnlib.train.unlearn import METHODS

    def profile_fields(value: Any, name: str) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{name} takes a dict of profile fields, not {value!r}.")
        valid = {field.name for field in dataclasses.fields(Profile)}
        unknown = sorted(set(value) - valid)
        if unknown:
            raise ValueError(f"{name}: Profile has no field(s) {unknown}. Valid fields: "
                             f"{', '.join(sorted(valid))}.")

    counts = ("EPOCHS", "MAX_STEPS", "MAX_SAMPLES", "MAX_NEW_TOKENS", "JOBS", "CURVE_EVERY",
              "AUDIT_MAX_FACTS")
    return {
        "FORGET_SPLIT": lambda value, name: check_choice(value, name, FORGET_PERCENT),
        "METHOD": lambda value, name: check_choice(value, name, METHODS),
        "METHODS": lambda value, name: check_choice(value, name, METHODS),
        "LR": check_learning_rate, "LRS": check_learning_rate,
        "BETA": check_positive, "BETAS": check_positive,
        **dict.fromkeys(counts, check_at_least_one),
        **dict.fromkeys(("FULL_MODEL", "RETAIN_MODEL"), lambda value, name: check_model_folder(
            value)),
        "PROFILE_OVERRIDES": profile_fields,
    }


def _kind(value: Any) -> str | None:
    """The kind of a parameter value as a user would name it (None: anything goes)."""
    if isinstance(value, bool):
        return "True or False"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list | tuple) else None


def check_parameters(notebooks: Sequence[str | Path], parameters: Mapping[str, Any],
                     given_as: str = "-p") -> None:
    """Refuse, before any kernel starts, a parameter none of `notebooks` declares (papermill
    would only warn and run the default), and a value of the wrong kind or range.

    Declared names and defaults come from `papermill.inspect_notebook`; `given_as` names
    where the parameters came from in the message (e.g. "-p", "grid key").
    """
    import difflib

    import papermill

    declared: dict[str, list[Any]] = {}
    for path in notebooks:
        for name, info in papermill.inspect_notebook(str(path)).items():
            with contextlib.suppress(ValueError, SyntaxError):
                declared.setdefault(name, []).append(ast.literal_eval(info["default"]))
            declared.setdefault(name, [])
    names = ", ".join(Path(p).stem for p in notebooks)
    for name in parameters:
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ValueError(f"{given_as} {name}: not a parameter of {names}.{hint} "
                             f"Parameters: {', '.join(declared)}.")
    rules = _parameter_rules()
    for name, value in parameters.items():
        kinds = {_kind(default) for default in declared[name]}
        if value is not None and None not in kinds and kinds and _kind(value) not in kinds:
            raise ValueError(f"{given_as} {name} takes {' or '.join(sorted(kinds))} "
                             f"(default {declared[name][0]!r}), not {value!r}.")
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and name in rules:
                rules[name](item, f"{given_as} {name}")
