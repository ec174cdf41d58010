"""The colab-t4 rehearsal: every notebook on the GPU profile's path, on CPU, real TOFU.

One run of `course.rehearsal.run_rehearsal` (the `small` stand-in, random weights) per
module; the tests check that each notebook finished, wrote what its stage must write, and
printed nothing alarming. No metric is checked: on random weights they mean nothing.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat
import pytest

from unlearnlib.audit.run import FAMILIES, MEMBERSHIP_FILE, RECORDS_FILE, TABLE_FILE
from unlearnlib.course.card import CARD_FILE
from unlearnlib.course.rehearsal import HOME_DIR, REHEARSED_PROFILE, SWEEP_DIR, run_rehearsal
from unlearnlib.course.runner import NotebookFailed, NotebookRun, course_notebooks
from unlearnlib.course.sweep import REPORT_FILE, RESULTS_FILE, SELECTION_FILE
from unlearnlib.evaluation.eval_logs import EVAL_FILENAME, SETTINGS_KEY, SUMMARY_FILENAME
from unlearnlib.profiles import get_profile

#: Text in a cell's output that means something went wrong even if the cell did not raise.
ALARMING = re.compile(r"Traceback|\b\w*Error\b|\bWARNING\b|\w+Warning\b")


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, tofu_dir) -> tuple[Path, list[NotebookRun], float]:
    """The rehearsal's output folder, its runs (up to a failed one) and its wall time."""
    out = tmp_path_factory.mktemp("rehearsal")
    start = time.perf_counter()
    try:
        runs = run_rehearsal(tofu_dir, out, progress=False)
    except NotebookFailed as failed:
        runs = failed.runs
    return out, runs, time.perf_counter() - start


def _sweep_dir(out: Path) -> Path:
    return out / SWEEP_DIR / REHEARSED_PROFILE / "seed0"


def test_every_notebook_finishes(rehearsal, record_property):
    out, runs, seconds = rehearsal
    record_property("rehearsal_seconds", round(seconds, 1))
    print(f"rehearsal wall time: {seconds:.0f} s")
    for run in runs:
        print(f"{run.notebook}: {run.seconds:.0f} s, {run.status}")
    assert [r.error for r in runs if r.status != "ok"] == []
    assert [r.notebook for r in runs] == [p.stem for p in course_notebooks()]
    assert json.loads((out / "summary.json").read_text())["status"] == "ok"


def test_no_cell_prints_an_error_or_to_stderr(rehearsal):
    out, runs, _ = rehearsal
    alarming = []
    for run in runs:
        notebook = nbformat.read(run.output, as_version=4)
        for index, cell in enumerate(notebook.cells):
            for output in cell.get("outputs", []):
                text = output.get("text", "") or "\n".join(
                    str(v) for k, v in output.get("data", {}).items() if k == "text/plain")
                if (output.output_type == "error"
                        or (output.output_type == "stream" and output.name == "stderr")
                        or ALARMING.search(text)):
                    alarming.append(f"{run.notebook} cell {index}: {text.strip()[:300]}")
    assert alarming == []


def test_evaluations_write_their_logs_in_the_real_chat_format(rehearsal):
    out, _, _ = rehearsal
    folder = out / HOME_DIR / "evals" / f"{REHEARSED_PROFILE}-retain"
    assert (folder / SUMMARY_FILENAME).is_file()
    log = json.loads((folder / EVAL_FILENAME).read_text())
    settings = log[SETTINGS_KEY]
    assert settings["forget_split"] == "forget01"
    assert settings["max_new_tokens"] == get_profile(REHEARSED_PROFILE,
                                                     check_cuda=False).max_new_tokens
    generated = next(iter(log["forget_Q_A_ROUGE"]["value_by_index"].values()))
    assert "Cutting Knowledge Date" in generated["input"]  # Llama-3's chat template


def test_the_audit_writes_every_family(rehearsal):
    out, _, _ = rehearsal
    folder = out / HOME_DIR / "runs" / f"06-audit-{REHEARSED_PROFILE}"
    assert (folder / TABLE_FILE).is_file() and (folder / MEMBERSHIP_FILE).is_file()
    records = [json.loads(line) for line in (folder / RECORDS_FILE).read_text().splitlines()]
    assert {r["family"] for r in records} == set(FAMILIES)
    assert {r["model"] for r in records} == {"full", "retain", "npo"}


def test_the_sweep_runs_two_points_and_writes_the_card(rehearsal):
    sweep = _sweep_dir(rehearsal[0])
    points = [p for p in sweep.iterdir() if (p / RESULTS_FILE).is_file()]
    assert len(points) == 2
    assert (sweep / REPORT_FILE).is_file()
    best = json.loads((sweep / SELECTION_FILE).read_text())
    assert best
    assert any((p / CARD_FILE).is_file() for p in points)
