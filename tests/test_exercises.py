"""The course's exercises: every one a stub and a check, every worked solution passing its
check and every typical wrong answer failing it with its hint, on synthetic inputs (no
model is trained: each exercise's stub, solution and check cell run in a namespace that
stands in for the notebook's)."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pytest

from unlearnlib.course.exercises import (
    EXERCISES,
    STRICT_ENV,
    ExerciseFailed,
    check,
    read_solutions,
    solutions_file,
    stub_id,
)
from unlearnlib.course.runner import course_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_PATHS = course_notebooks(REPO / "notebooks")
GOLDENS = REPO / "tests" / "goldens"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


@pytest.fixture(autouse=True)
def lenient_checks(monkeypatch):
    """A check prints its verdict unless a test asks for the runner's strict mode: under
    `--nbval-lax` the goldens' conftest puts the runner's environment (strict) in os.environ."""
    monkeypatch.delenv(STRICT_ENV, raising=False)


def _is_exercise_heading(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "markdown" and cell.source.startswith("### Exercise")


def _exercise_cells(path: Path) -> list[tuple[str, str, str]]:
    """(heading, stub source, check source) of every exercise of a notebook, in order."""
    cells = nbformat.read(path, as_version=4).cells
    return [(cell.source, cells[i + 1].source, cells[i + 2].source)
            for i, cell in enumerate(cells) if _is_exercise_heading(cell)]


#: exercise id -> (notebook, stub source, check source)
CELLS = {stub_id(stub): (path, stub, check_source)
         for path in NOTEBOOK_PATHS for _, stub, check_source in _exercise_cells(path)}


def _stub_names(stub: str) -> list[str]:
    """The names a stub assigns `...` to: what the student fills in."""
    return [node.targets[0].id for node in ast.parse(stub).body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            and node.value.value is Ellipsis]


def _check_call(check_source: str) -> ast.Call:
    (call,) = [node for node in ast.walk(ast.parse(check_source))
               if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check"]
    return call


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_every_exercise_has_a_stub_and_a_check(path):
    exercises = _exercise_cells(path)
    assert exercises, "at least one exercise"
    solutions = read_solutions(solutions_file(path))
    for heading, stub, check_source in exercises:
        exercise_id = stub_id(stub)
        assert exercise_id in EXERCISES, f"the cell after {heading[:40]!r} is no stub"
        assert heading.startswith(f"### {EXERCISES[exercise_id].title}: ")
        names = _stub_names(stub)
        assert names, stub
        for statement in ast.parse(stub).body:  # nothing but imports and `name = ...`
            assert isinstance(statement, ast.Import | ast.ImportFrom) or (
                isinstance(statement, ast.Assign) and statement.targets[0].id in names), stub
        assert check_source.startswith(CHECK_MARKER)
        call = _check_call(check_source)
        assert ast.literal_eval(call.args[0]) == exercise_id
        assert {k.arg for k in call.keywords if getattr(k.value, "id", None) == k.arg} >= set(
            names)
        assigned = {node.id for node in ast.walk(ast.parse(solutions[exercise_id]))
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        assert set(names) <= assigned, f"the solution of {exercise_id} assigns {names}"
    assert sorted(solutions) == sorted(stub_id(stub) for _, stub, _ in exercises)


def test_every_registered_exercise_is_in_one_notebook():
    ids = [stub_id(stub) for path in NOTEBOOK_PATHS for _, stub, _ in _exercise_cells(path)]
    assert sorted(ids) == sorted(EXERCISES)  # each once, none left over


# Synthetic stand-ins for the notebook names each exercise's cells use.

def _profile() -> dict[str, Any]:
    return {}


def _forget_share() -> dict[str, Any]:
    return {"splits": {"forget10": range(10), "full": range(100)}}


def _last_rows() -> dict[str, Any]:
    import datasets

    full = datasets.Dataset.from_dict({"question": [f"q{i}" for i in range(50)],
                                       "answer": [f"a{i}" for i in range(50)]})
    return {"full": full, "FORGET_SPLIT": "forget10", "forget": full.select(range(45, 50))}


def _decode_labels() -> dict[str, Any]:
    vocabulary = ["Who", "?", "Ann", " wrote", "</s>"]
    tokenizer = SimpleNamespace(decode=lambda ids, **options: "".join(vocabulary[i] for i in ids),
                                eos_token="</s>")
    return {"tokenizer": tokenizer, "IGNORE_INDEX": -100, "example": {"answer": " Ann wrote "},
            "encoded": SimpleNamespace(labels=[-100, -100, 2, 3, 4])}


def _fq_by_hand() -> dict[str, Any]:
    from unlearnlib.evaluation.tofu_metrics import forget_quality

    rng = np.random.default_rng(0)
    full, retain = rng.uniform(0, 0.6, 100), rng.uniform(0.3, 1.5, 100)
    return {"truth_ratios": {"full": list(full), "retain": list(retain)},
            "full_eval": SimpleNamespace(summary={"forget_quality": forget_quality(full, retain)})}


def _weight_tenth() -> dict[str, Any]:
    return {"math": math, "BETA": 0.1}


def _retain_drop() -> dict[str, Any]:
    methods = pd.Index(["ga", "graddiff", "npo"], name="method")
    return {"start": pd.DataFrame({"retain_prob": [0.9, 0.9, 0.9]}, index=methods),
            "final": pd.DataFrame({"retain_prob": [0.05, 0.3, 0.4]}, index=methods)}


def _fq_peak() -> dict[str, Any]:
    return {"history": pd.DataFrame({
        "method": ["ga"] * 3 + ["npo"] * 3, "epoch": [0.0, 3.0, 6.0] * 2,
        "forget_quality": [1e-9, 1e-3, 1e-5, 1e-9, 1e-4, 0.2]})}


def _harmonic_mean() -> dict[str, Any]:
    components = pd.DataFrame({"full": np.linspace(0.5, 0.9, 9),
                               "npo": np.linspace(0.2, 0.95, 9)})
    utility = len(components) / (1 / components["npo"]).sum()
    return {"components": components,
            "npo_eval": SimpleNamespace(summary={"model_utility": utility})}


def _noise_floor() -> dict[str, Any]:
    spread = pd.DataFrame({"forget_quality": [0.01, 0.4, 0.5, 0.9]},
                          index=pd.Index([0, 1, 2, 3], name="seed"))
    return {"spread": spread, "floor": {"forget_quality": 0.3}}


def _format_leak() -> dict[str, Any]:
    from unlearnlib.audit.recall import check_records, leak_table
    from unlearnlib.audit.run import AuditResult

    rng = np.random.default_rng(1)
    records = check_records(pd.DataFrame([
        {"model": model, "family": family, "probe": probe, "fact_id": f"f{k}",
         "author": f"a{k // 3}", "seed": 0, "prompt": "", "generation": "", "key_span": "",
         "recalled": bool(rng.random() < 0.5)}
        for model in ("npo", "retain") for family in ("direct", "format_shift")
        for probe in ("mc", "cloze") for k in range(12)]))
    audit = AuditResult(records, leak_table(records, n_bootstrap=10), pd.DataFrame(),
                        pd.DataFrame())
    return {"audit": audit}


def _sweep() -> dict[str, Any]:
    table = pd.DataFrame({"rank": [2, 1, 4, 3], "point": ["p1", "p2", "p3", "p4"],
                          "forget_quality": [0.5, 0.5, 0.01, 0.2],
                          "model_utility": [0.7, 0.8, 0.9, 0.85],
                          "privleak": [75.0, -24.0, -90.0, 10.0]})
    return {"report": SimpleNamespace(table=table, best=SimpleNamespace(name="p2")),
            "my_best": "p2"}


def _raw_format_recall(namespace: dict[str, Any]) -> float:
    records = namespace["audit"].records
    shifted = records[(records["family"] == "format_shift") & (records["model"] == "npo")]
    return shifted.groupby("fact_id")["recalled"].any().mean()


#: exercise id -> the notebook's names it needs, and typical wrong answers: a function of
#: the namespace (after the worked solution ran) giving the wrong values, and a piece of
#: the hint they must get.
Wrong = tuple[Callable[[dict[str, Any]], dict[str, Any]], str]
SYNTHETIC: dict[str, tuple[Callable[[], dict[str, Any]], list[Wrong]]] = {
    "profile": (_profile, [
        (lambda ns: {"my_profile": ns["get_profile"]("tiny", unlearn_epochs=5,
                                                     learning_rate=5e-4, seed=3)},
         "override only the two fields"),
        (lambda ns: {"my_profile": ns["get_profile"]("tiny")}, "derives a variant")]),
    "forget-share": (_forget_share, [(lambda ns: {"share": 10.0}, "a fraction")]),
    "last-rows": (_last_rows, [
        (lambda ns: {"last_rows": ns["full"].select(range(5))}, "at the end of full"),
        (lambda ns: {"last_rows": ns["full"].select(range(40, 50))}, "FORGET_PERCENT")]),
    "decode-labels": (_decode_labels, [
        (lambda ns: {"learned": "Ann wrote"}, "end-of-turn token is labelled too"),
        (lambda ns: {"learned": "Who?Ann wrote</s>"}, "labelled -100")]),
    "fq-by-hand": (_fq_by_hand, [
        (lambda ns: {"fq_retain": 0.5}, "identical samples have KS statistic 0"),
        (lambda ns: {"fq_full": ns["forget_quality"](ns["truth_ratios"]["retain"],
                                                     ns["truth_ratios"]["full"][:50])},
         "the model's truth ratios first")]),
    "weight-tenth": (_weight_tenth, [
        (lambda ns: {"r_tenth": -ns["r_tenth"]}, "r is negative"),
        (lambda ns: {"r_tenth": math.log(0.1) / ns["BETA"]}, "sigmoid(beta r) = 0.05")]),
    "retain-drop": (_retain_drop, [
        (lambda ns: {"retain_drop": -ns["retain_drop"]}, "a drop is first minus last"),
        (lambda ns: {"paid_most": "npo"}, "idxmax() names the method")]),
    "fq-peak": (_fq_peak, [
        (lambda ns: {"peak_epoch": ns["history"].groupby("method")["epoch"].max()},
         "the row with the highest forget_quality")]),
    "harmonic-mean": (_harmonic_mean, [
        (lambda ns: {"mu_npo": ns["components"]["npo"].mean()}, "averages the reciprocals")]),
    "noise-floor": (_noise_floor, [
        (lambda ns: {"share_at_floor": 3}, "divide by the number of seeds"),
        (lambda ns: {"share_at_floor": 0.25}, "take the mean of the booleans")]),
    "format-leak": (_format_leak, [
        (lambda ns: {"npo_format_leak": _raw_format_recall(ns)},
         "count a fact only when the retain model's probe")]),
    "rank-1": (_sweep, [
        (lambda ns: {"my_best": "p3"}, "ascending=False"),
        (lambda ns: {"my_best": "p1"}, "puts the winner first")]),
    "privleak": (_sweep, [
        (lambda ns: {"closest_to_zero": "p3"}, ".abs()"),
        (lambda ns: {"closest_to_zero": "p2"}, "smallest absolute value")]),
}


def test_every_exercise_has_synthetic_inputs():
    assert sorted(SYNTHETIC) == sorted(EXERCISES)


def _run(source: str, namespace: dict[str, Any], capsys) -> str:
    """Execute a cell's source in `namespace`; returns what it printed."""
    capsys.readouterr()
    exec(compile(source, "cell", "exec"), namespace)
    return capsys.readouterr().out


def _solved(exercise_id: str, capsys) -> dict[str, Any]:
    """The namespace after the exercise's worked solution ran on the synthetic inputs."""
    path, _, _ = CELLS[exercise_id]
    namespace = SYNTHETIC[exercise_id][0]()
    _run(read_solutions(solutions_file(path))[exercise_id], namespace, capsys)
    return namespace


exercise_ids = pytest.mark.parametrize("exercise_id", sorted(EXERCISES))


@exercise_ids
def test_an_untouched_stub_says_not_attempted(exercise_id, capsys):
    _, stub, check_source = CELLS[exercise_id]
    namespace = SYNTHETIC[exercise_id][0]()
    _run(stub, namespace, capsys)
    out = _run(check_source, namespace, capsys)
    assert "not attempted yet: replace the ... of" in out, out
    assert all(name in out for name in _stub_names(stub))


@exercise_ids
def test_the_worked_solution_passes_its_check(exercise_id, capsys, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")  # as the course runner sets it: a failure raises
    namespace = _solved(exercise_id, capsys)
    out = _run(CELLS[exercise_id][2], namespace, capsys)
    assert out.startswith(f"{EXERCISES[exercise_id].title}: passed"), out
    assert out.count("\n") == 1


@exercise_ids
def test_a_wrong_answer_fails_with_its_hint(exercise_id, capsys, monkeypatch):
    for wrong, hint in SYNTHETIC[exercise_id][1]:
        namespace = _solved(exercise_id, capsys)
        namespace.update(wrong(namespace))
        out = _run(CELLS[exercise_id][2], namespace, capsys)
        assert out.startswith(f"{EXERCISES[exercise_id].title}, not yet: "), out
        assert "Hint: " in out and hint in out, out
        monkeypatch.setenv(STRICT_ENV, "1")
        with pytest.raises(ExerciseFailed, match="not yet"):
            _run(CELLS[exercise_id][2], namespace, capsys)
        monkeypatch.delenv(STRICT_ENV)


def test_an_answer_of_the_wrong_kind_is_a_verdict_not_a_traceback(capsys):
    check("weight-tenth", r_tenth="minus thirty", beta=0.1)
    out = capsys.readouterr().out
    assert out.startswith("Exercise, not yet: checking it raised ValueError")
    assert "Hint: 2 sigmoid(beta r) = 0.1" in out


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)
def test_goldens_show_every_exercise_passed(path):
    """Refreshed by `make goldens`: the runner's solutions must pass every check."""
    cells = nbformat.read(GOLDENS / path.name, as_version=4).cells
    outputs = ["".join(o.get("text", "") for o in cells[i + 2].get("outputs", []))
               for i, cell in enumerate(cells) if _is_exercise_heading(cell)]
    titles = [EXERCISES[stub_id(stub)].title for _, stub, _ in _exercise_cells(path)]
    assert len(outputs) == len(titles), "run `make goldens`"
    for title, out in zip(titles, outputs, strict=True):
        assert out.startswith(f"{title}: passed"), out
