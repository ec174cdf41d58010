"""The course's notebooks: hygiene conventions, golden notebooks, the papermill runner, plots.

`make test` also runs `pytest --nbval-lax`, which re-executes the goldens under tests/goldens
and compares the cells marked `# NBVAL_CHECK_OUTPUT`; these tests make sure the goldens
are the notebooks' own sources (with the exercises' worked solutions filled in, as the
runner executes them) and that the marked cells check something. tests/test_exercises.py
checks the exercises themselves.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import types
from pathlib import Path

import matplotlib
import nbformat
import pandas as pd
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from matplotlib.colors import to_hex

from unlearnlib.cli import main, parse_parameter
from unlearnlib.course import runner
from unlearnlib.course.exercises import STRICT_ENV, with_solutions
from unlearnlib.course.notebook import PROGRESS_ENV, course_environment, setup_notebook
from unlearnlib.course.runner import (
    GITHUB_REPO,
    INJECTED_TAG,
    KERNEL_NAME,
    NotebookFailed,
    course_notebooks,
    run_course,
    strip_volatile,
)
from unlearnlib.plots import SPLIT_PALETTE, plot_split_sizes, split_family
from unlearnlib.profiles import get_profile

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
GOLDENS = REPO / "tests" / "goldens"
CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"
#: Text that would make a checked output change from run to run or machine to machine.
VOLATILE_IN_CHECKED_CELLS = ("__version__", "perf_counter", "time.time", "datetime", "pvalue",
                             "cuda.get_device_name")

NOTEBOOK_PATHS = course_notebooks(NOTEBOOKS)


def colab_url(notebook: str | Path) -> str:
    """The "Open in Colab" link each notebook's first cell must carry."""
    return (f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/"
            f"{Path(notebook).name}")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _python(source: str) -> ast.Module:
    """A cell's source as Python, with IPython syntax (%pip, !cmd) turned into calls."""
    return ast.parse(TransformerManager().transform_cell(source))


def _tagged(notebook: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


notebook_params = pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=lambda p: p.stem)


def test_the_course_has_numbered_notebooks_only():
    assert [p.name for p in NOTEBOOK_PATHS][:2] == ["00_welcome.ipynb", "01_tofu_data.ipynb"]
    assert sorted(NOTEBOOKS.glob("*.ipynb")) == NOTEBOOK_PATHS  # nothing else, all NN_name


@notebook_params
def test_committed_without_outputs(path):
    for cell in _code_cells(_read(path)):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
    assert "papermill" not in _read(path).metadata


@notebook_params
def test_kernel_and_colab_gpu_metadata(path):
    metadata = _read(path).metadata
    assert metadata.kernelspec.name == KERNEL_NAME
    assert metadata.accelerator == "GPU"
    assert metadata.colab.gpuType == "T4"


@notebook_params
def test_title_and_badge_to_its_own_path(path):
    notebook = _read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert f"]({colab_url(path)})" in first.source
    links = re.findall(r"https://colab\.research\.google\.com/github/[^)\s]+",
                       "\n".join(c.source for c in notebook.cells))
    assert links == [f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/"
                     f"notebooks/{path.name}"]


def _run_install_cell(source: str) -> list[tuple[str, str]]:
    """Execute the install cell with a stand-in IPython; returns the magics it ran."""
    calls: list[tuple[str, str]] = []
    shell = types.SimpleNamespace(run_line_magic=lambda name, line: calls.append((name, line)),
                                  system=lambda command: calls.append(("system", command)))
    exec(compile(_python(source), "install-cell", "exec"), {"get_ipython": lambda: shell})
    return calls


@notebook_params
def test_first_code_cell_installs_on_colab_only(path, monkeypatch):
    source = _code_cells(_read(path))[0].source
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert _run_install_cell(source) == []  # does nothing outside Colab
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    calls = _run_install_cell(source)
    assert len(calls) == 1
    command = " ".join(calls[0])
    assert "pip install" in command
    assert f"unlearnlib @ git+https://github.com/{GITHUB_REPO}" in command
    assert " -e " not in command and "--editable" not in command  # -e needs a restart on Colab
    assert not re.search(r"\b(torch|numpy)\b", command)  # never reinstall Colab's own


@notebook_params
def test_one_parameters_cell_of_literal_assignments(path):
    notebook = _read(path)
    (cell,) = _tagged(notebook, "parameters")
    assert _code_cells(notebook)[1] is cell  # right after the install cell
    values = {}
    for statement in ast.parse(cell.source).body:
        assert isinstance(statement, ast.Assign) and len(statement.targets) == 1
        assert isinstance(statement.targets[0], ast.Name)
        values[statement.targets[0].id] = ast.literal_eval(statement.value)
    assert values["PROFILE"] == "tiny"
    assert "setup_notebook(PROFILE" in _code_cells(notebook)[2].source  # then the set-up


@notebook_params
def test_objectives_and_narrative_before_computation(path):
    cells = _read(path).cells
    first_code = next(i for i, cell in enumerate(cells) if cell.cell_type == "code")
    objectives = [c.source for c in cells[:first_code] if "## Learning objectives" in c.source]
    assert objectives and len(re.findall(r"^- ", objectives[0], re.M)) >= 3
    run = 0
    for cell in cells:  # prose between computations: never more than two code cells in a row
        run = run + 1 if cell.cell_type == "code" else 0
        assert run <= 2, cell.source[:60]


@notebook_params
def test_checked_cells_print_nothing_volatile(path):
    checked = [c for c in _code_cells(_read(path)) if CHECK_MARKER in c.source]
    assert checked, "nbval checks the cells marked # NBVAL_CHECK_OUTPUT; mark at least one"
    for cell in checked:
        assert cell.source.startswith(CHECK_MARKER)
        assert not any(word in cell.source for word in VOLATILE_IN_CHECKED_CELLS), cell.source


def test_every_notebook_has_a_golden():
    assert sorted(p.name for p in GOLDENS.glob("*.ipynb")) == [p.name for p in NOTEBOOK_PATHS], (
        "run `make goldens` after adding, renaming or editing a notebook")


def _without_injected(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in notebook.cells
            if INJECTED_TAG not in c.metadata.get("tags", [])]


@notebook_params
def test_golden_sources_equal_notebook_sources(path):
    """A golden is its notebook as the course runner executes it: solutions filled in."""
    golden = _read(GOLDENS / path.name)
    assert _without_injected(golden) == _without_injected(with_solutions(path)), (
        "the notebook or its solutions changed since its golden was made: run `make goldens`")
    assert golden.metadata.kernelspec.name == KERNEL_NAME


@notebook_params
def test_goldens_are_executed_on_tiny_and_stripped(path):
    golden = _read(GOLDENS / path.name)
    (injected,) = _tagged(golden, INJECTED_TAG)
    assert 'PROFILE = "tiny"' in injected.source
    assert not {"papermill", "execution"} & set(golden.metadata)
    for cell in _code_cells(golden):
        assert cell.execution_count is not None, cell.source[:60]
        assert not {"papermill", "execution"} & set(cell.metadata)
        assert all(output.output_type != "error" for output in cell.outputs)
        # No warnings, progress bars or log lines: a student sees only what the cell prints.
        assert all(o.get("name") != "stderr" for o in cell.outputs), cell.source
        if CHECK_MARKER in cell.source:  # a checked cell checks something
            assert cell.outputs, cell.source


def _recipe(makefile: str, target: str) -> str:
    return re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)


def test_make_runs_the_course_checks_and_refreshes_the_goldens():
    makefile = (REPO / "Makefile").read_text()
    course_recipe = _recipe(makefile, "course")
    assert "unlearnlib course run --profile tiny --out build/executed" in course_recipe
    assert "pytest -q --nbval-lax" in _recipe(makefile, "test")
    goldens = _recipe(makefile, "goldens")
    assert "course run --profile tiny" in goldens and "--strip" in goldens
    assert "tests/goldens/" in goldens
    assert "ipykernel install --sys-prefix --name python3" in _recipe(makefile, "install")


# The runner, on small synthetic notebooks (each starts a real kernel: about two seconds).

def _notebook(folder: Path, name: str, *sources: str, parameters: str = 'PROFILE = "x"') -> Path:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
             *(nbformat.v4.new_code_cell(source) for source in sources)]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}})
    path = folder / f"{name}.ipynb"
    nbformat.write(notebook, path)
    return path


def _stdout(path: Path) -> str:
    return "".join(o.get("text", "") for c in _code_cells(_read(path)) for o in c.outputs)


def test_run_course_injects_parameters_sets_environment_and_times(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks, "00_first", "import os\nprint(PROFILE, STEPS, os.environ['"
              + PROGRESS_ENV + "'], os.environ['HF_HUB_OFFLINE'])", parameters="PROFILE = 'x'\n"
              "STEPS = 1")
    _notebook(notebooks, "01_second", "print('second', PROFILE)")
    runs = run_course("tiny", tmp_path / "out", parameters={"STEPS": 3}, notebooks=notebooks,
                      strip=True, progress=False)
    assert [(r.notebook, r.status) for r in runs] == [("00_first", "ok"), ("01_second", "ok")]
    assert _stdout(tmp_path / "out" / "00_first.ipynb") == "tiny 3 0 1\n"
    assert PROGRESS_ENV not in os.environ  # restored after the run
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["parameters"] == {"PROFILE": "tiny", "STEPS": 3}
    assert [n["notebook"] for n in summary["notebooks"]] == ["00_first", "01_second"]
    assert summary["total_seconds"] == pytest.approx(sum(r.seconds for r in runs), abs=0.11)
    stripped = _read(tmp_path / "out" / "01_second.ipynb")
    assert "papermill" not in stripped.metadata
    assert _tagged(stripped, INJECTED_TAG)[0].id == INJECTED_TAG


def test_run_course_failure_names_notebook_and_cell_and_keeps_output(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks, "00_fine", "print('fine')")
    _notebook(notebooks, "01_broken", "print('before')", "x = 1\nraise ValueError('no data')")
    _notebook(notebooks, "02_never", "print('never')")
    with pytest.raises(NotebookFailed) as failure:
        run_course("tiny", tmp_path / "out", notebooks=notebooks, progress=False)
    message = str(failure.value)
    assert "01_broken.ipynb failed in code cell In [4]" in message  # after the injected cell
    assert "'x = 1'" in message and "ValueError: no data" in message
    assert str(tmp_path / "out" / "01_broken.ipynb") in message
    assert _stdout(tmp_path / "out" / "01_broken.ipynb").startswith("before\n")  # partial kept
    assert not (tmp_path / "out" / "02_never.ipynb").exists()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert [(n["notebook"], n["status"]) for n in summary["notebooks"]] == [
        ("00_fine", "ok"), ("01_broken", "failed")]


def test_run_course_fills_in_the_worked_solutions(tmp_path):
    notebooks = tmp_path / "notebooks"
    (notebooks / "solutions").mkdir(parents=True)
    source = _notebook(notebooks, "00_exercise", "# EXERCISE: demo\nanswer = ...",
                       "print(answer)")
    (notebooks / "solutions" / "00_exercise.py").write_text(
        '"""Solutions."""\n\n# %% EXERCISE: demo\nanswer = 42\n')
    run_course("tiny", tmp_path / "out", notebooks=notebooks, progress=False)
    executed = tmp_path / "out" / "00_exercise.ipynb"
    assert _stdout(executed) == "42\n"
    assert _code_cells(_read(executed))[2].source == "# EXERCISE: demo\nanswer = 42"
    assert _read(executed).metadata.papermill["input_path"] == str(source)
    assert _code_cells(_read(source))[1].source.endswith("answer = ...")  # left as it was


def test_run_course_refuses_a_stub_without_a_solution(tmp_path):
    _notebook(tmp_path, "00_exercise", "# EXERCISE: demo\nanswer = ...")
    with pytest.raises(KeyError, match="No worked solution for exercise 'demo'"):
        run_course("tiny", tmp_path / "out", notebooks=tmp_path, progress=False)
    assert not (tmp_path / "out").exists()  # before any kernel starts


def test_only_selects_by_number_and_names_the_choices(tmp_path):
    for name in ("00_a", "01_b", "02_c"):
        _notebook(tmp_path, name)
    assert [p.stem for p in course_notebooks(tmp_path, only=["02", "00"])] == ["00_a", "02_c"]
    with pytest.raises(ValueError, match=r"No notebook numbered \['07'\].*00_a, 01_b, 02_c"):
        course_notebooks(tmp_path, only=["07"])


def test_cli_passes_profile_only_and_typed_parameters(monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "run_course", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert main(["course", "run", "--out", "build/x", "--only", "01", "-p", "EXAMPLE", "3",
                 "-p", "LR", "5e-5", "-p", "NAME", "npo"]) == 0
    [(args, kwargs)] = calls
    assert args == ("tiny", "build/x") and kwargs["only"] == ["01"]
    assert kwargs["parameters"] == {"EXAMPLE": 3, "LR": 5e-5, "NAME": "npo"}
    assert parse_parameter("True") is True and parse_parameter("[1, 2]") == [1, 2]


def test_environment_is_offline_only_when_nothing_needs_the_hub():
    tiny = course_environment("tiny")
    assert tiny["HF_HUB_OFFLINE"] == tiny["HF_DATASETS_OFFLINE"] == "1"
    assert tiny[PROGRESS_ENV] == "0" and "TQDM_DISABLE" not in tiny
    assert tiny[STRICT_ENV] == "1"  # a worked solution that fails its check fails the run
    hub = course_environment(get_profile("tiny", data_source="hub"))
    assert "HF_HUB_OFFLINE" not in hub and hub[PROGRESS_ENV] == "0"


def test_setup_notebook_turns_progress_bars_off_in_batch_runs(monkeypatch):
    import datasets
    from transformers.utils import logging as transformers_logging

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    datasets.enable_progress_bars()
    setup_notebook("tiny")
    assert datasets.is_progress_bar_enabled()
    monkeypatch.setenv(PROGRESS_ENV, "0")
    try:
        assert setup_notebook("tiny", seed=3).seed == 3
        assert not datasets.is_progress_bar_enabled()
        assert not transformers_logging.is_progress_bar_enabled()
    finally:
        datasets.enable_progress_bars()
        transformers_logging.enable_progress_bar()


def test_strip_volatile_keeps_outputs():
    notebook = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 1.0}})
    cell = nbformat.v4.new_code_cell("1", execution_count=1, outputs=[
        nbformat.v4.new_output("stream", text="1\n")])
    cell.metadata.update(papermill={"duration": 0.1}, execution={"iopub.status.busy": "now"})
    notebook.cells.append(cell)
    strip_volatile(notebook)
    assert "papermill" not in notebook.metadata and dict(cell.metadata) == {}
    assert cell.outputs[0].text == "1\n" and cell.execution_count == 1


def test_plots_colour_by_split_family_and_label_axes():
    assert [split_family(c) for c in ("full", "forget10_perturbed", "retain_perturbed",
                                      "holdout05", "world_facts")] == [
        "full", "forget", "retain", "holdout", "general"]
    ax = plot_split_sizes(pd.DataFrame({"config": ["full", "forget10", "holdout10"],
                                        "rows": [1000, 100, 100]}))
    colours = {to_hex(bar.get_facecolor()).upper() for bar in ax.patches
               if bar.get_width() > 0}
    assert colours == {SPLIT_PALETTE[f] for f in ("full", "forget", "holdout")}
    assert ax.get_xlabel() and ax.get_ylabel()


#: The numbers a notebook's text may hold: every other number in markdown is a run's result
#: typed in by hand, which another machine or seed would contradict (print it from code).
MARKDOWN_NUMBERS = {
    # structure: notebook numbers, small counts, list items
    *(f"0{n}" for n in range(8)), *(str(n) for n in range(11)),
    # TOFU and TOFU-mini by construction: authors, questions per author, split sizes
    "20", "40", "100", "200", "400",
    # hyper-parameters the text names: epochs, learning rates, beta, gamma, the 0.05 level,
    # the 54-run grid of the seed card, quantisation group size
    "1.4e-3", "5e-4", "1e-4", "0.1", "0.125", "4.5", "0.05", "0.5", "54", "128",
    # exact arithmetic of the derivations: (2 / beta) log 2, a fixed-rate ascent's drift
    "13.9", "300",
    # GPU memory of the profiles, dates of the chat template and the papers
    "24", "2023", "2024", "2025",
    # quoted, not measured: the years of LoRA (Hu et al. 2021) and of the logit lens post
    # (nostalgebraist 2020); Zhang et
    # al. 2025's 4-bit quantisation result (21 % -> 83 % of "forgotten" knowledge kept);
    # the seed card's learning rate and its novel-recall leaks (NPO 4.67 %, TOFU-full
    # 3.70 %, base models 0.4 %), and its forget quality and model utility (0.967, 0.548)
    "2020", "2021", "21", "83", "5e-5", "4.67", "3.70", "0.4", "0.967", "0.548",
}
_NUMBER = re.compile(r"(?<![\w.$-])\d+(?:\.\d+)?(?:e-?\d+)?%?")


@notebook_params
def test_markdown_holds_no_numbers_a_run_produces(path):
    for cell in _read(path).cells:
        if cell.cell_type != "markdown":
            continue
        text = re.sub(r"\]\([^)]*\)", "]", cell.source)  # link targets are not prose
        unexpected = sorted(set(_NUMBER.findall(text)) - MARKDOWN_NUMBERS)
        assert not unexpected, (f"numbers {unexpected} in markdown: print run-dependent "
                                f"values from code, or allow a fixed one here:\n{cell.source}")
