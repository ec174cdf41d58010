"""The course as a batch job: run the notebooks in order with papermill, time them, report.

`run_course` executes `notebooks/NN_*.ipynb` one after the other (a later notebook reuses
what an earlier one trained), each in a fresh `python3` kernel whose environment is set
before it starts: offline for the `tiny` profile, progress bars off. It writes every
executed notebook and a `summary.json` of wall times to the output folder; when a cell
fails it stops, names the notebook and the cell, and keeps the partial notebook.

What the notebooks and their hygiene tests share (the repository behind the Colab badges,
the kernel name, `setup_notebook`) is defined here once, so they cannot disagree.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import random
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unlearnlib.paths import REPO_ROOT
from unlearnlib.profiles import Profile, get_profile

if TYPE_CHECKING:  # nbformat's import costs seconds, paid only by the runner, not by notebooks
    from nbformat import NotebookNode

#: Where the course lives on GitHub (a placeholder organisation until it is published).
GITHUB_REPO = "unlearnlib-course/unlearnlib"
#: The kernel papermill and nbval start; `make install` registers the venv's as `python3`.
KERNEL_NAME = "python3"
#: Batch kernels keep their own log quiet: ipykernel 7 warns on every start that its local
#: TCP sockets are unencrypted and logs the interrupt papermill may send at shutdown, lines
#: that land in the runner's (or a sweep cell's) output. A failing cell is still reported.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)
#: "0" turns off the progress bars of datasets, transformers and huggingface_hub.
PROGRESS_ENV = "UNLEARNLIB_PROGRESS_BARS"
#: papermill writes this tag on the cell it injects after the `parameters` cell.
INJECTED_TAG = "injected-parameters"
#: Metadata that changes on every run (timings, paths), removed from golden notebooks.
VOLATILE_METADATA = ("papermill", "execution")


def colab_url(notebook: str | Path) -> str:
    """The "Open in Colab" link of a notebook, e.g. for notebooks/01_tofu_data.ipynb."""
    return (f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/"
            f"{Path(notebook).name}")


def course_environment(profile: str | Profile = "tiny") -> dict[str, str]:
    """Environment variables for a batch run's kernels: offline unless the profile needs the Hub.

    TQDM_DISABLE is not used: `tqdm.auto` ignores it. `setup_notebook` reads PROGRESS_ENV
    and calls the libraries' own switches instead.
    """
    profile = get_profile(profile)
    env = {PROGRESS_ENV: "0", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}
    uses_hub = profile.data_source == "hub" or any(
        model != "tiny" and not Path(model).expanduser().is_dir()
        for model in (profile.full_model, profile.retain_model))
    if not uses_hub:
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def setup_notebook(profile_name: str = "tiny", **overrides: Any) -> Profile:
    """A notebook's first step: the profile, seeds, the plot style, quiet bars in batch runs."""
    with warnings.catch_warnings():
        # Without ipywidgets, tqdm.auto warns once and draws text bars, which work fine.
        warnings.filterwarnings("ignore", message="IProgress not found")
        import datasets
        import huggingface_hub
        import transformers
    import numpy
    import torch

    from unlearnlib.plots import use_course_style

    if os.environ.get(PROGRESS_ENV) == "0":
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    profile = get_profile(profile_name, **overrides)
    # Python's, numpy's and torch's generators (transformers.set_seed would import its Trainer).
    random.seed(profile.seed)
    numpy.random.seed(profile.seed)
    torch.manual_seed(profile.seed)
    use_course_style()
    return profile


def notebooks_dir() -> Path:
    """The checkout's notebooks/ folder (the course runs from a clone, not a plain install)."""
    if REPO_ROOT is None or not (REPO_ROOT / "notebooks").is_dir():
        raise FileNotFoundError(
            "The notebooks live in the git checkout: clone the repository and run from there, "
            "or pass notebooks=... to run_course."
        )
    return REPO_ROOT / "notebooks"


def course_notebooks(folder: str | Path | None = None,
                     only: Sequence[str] | None = None) -> list[Path]:
    """The course's `NN_name.ipynb` notebooks in order; `only` keeps those numbered e.g. "01"."""
    folder = Path(folder) if folder is not None else notebooks_dir()
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


def summary_table(runs: Sequence[NotebookRun]) -> str:
    """Wall time per notebook and the total, as aligned text."""
    width = max([len("notebook"), *(len(r.notebook) for r in runs)])
    lines = [f"{'notebook':<{width}}  {'seconds':>8}  status", "-" * (width + 18)]
    lines += [f"{r.notebook:<{width}}  {r.seconds:>8.1f}  {r.status}" for r in runs]
    lines.append(f"{'total':<{width}}  {sum(r.seconds for r in runs):>8.1f}")
    return "\n".join(lines)


def _write_summary(out: Path, profile: str, parameters: Mapping[str, Any],
                   runs: Sequence[NotebookRun]) -> None:
    summary = {
        "profile": profile,
        "parameters": dict(parameters),
        "cpu_count": os.cpu_count(),
        "total_seconds": round(sum(r.seconds for r in runs), 1),
        "status": "ok" if all(r.status == "ok" for r in runs) else "failed",
        "notebooks": [asdict(r) for r in runs],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def run_course(profile: str = "tiny", out: str | Path = "build/executed",
               only: Sequence[str] | None = None, parameters: Mapping[str, Any] | None = None,
               notebooks: str | Path | None = None, strip: bool = False,
               verbose: bool = True) -> list[NotebookRun]:
    """Execute the course's notebooks in order with papermill; returns one `NotebookRun` each.

    Every notebook gets PROFILE=`profile` plus `parameters`. `strip` removes volatile
    metadata from the outputs (for golden notebooks). Raises `NotebookFailed` at the first
    failing notebook, after writing its partial output and summary.json.
    """
    import nbformat
    import papermill

    parameters = {"PROFILE": profile, **(parameters or {})}
    if parameters["PROFILE"] != profile:
        raise ValueError("Pass the profile with profile=... (--profile), not as a parameter.")
    paths = course_notebooks(notebooks, only)
    if not paths:
        raise FileNotFoundError(f"No NN_name.ipynb notebooks in {notebooks or notebooks_dir()}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[NotebookRun] = []
    error: Exception | None = None
    with temporary_environment(course_environment(profile)):
        for path in paths:
            output = out / path.name
            if verbose:
                print(f"running {path.name} ...", flush=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(str(path), str(output), parameters=parameters,
                                           kernel_name=KERNEL_NAME, progress_bar=False,
                                           extra_arguments=list(KERNEL_ARGUMENTS))
            except Exception as caught:  # recorded below, then raised with the cell named
                error = caught
            seconds = time.perf_counter() - start
            message = _failure_message(path, output, error) if error else None
            runs.append(NotebookRun(path.stem, round(seconds, 1), "failed" if error else "ok",
                                    str(output), message))
            if strip and output.is_file():
                nbformat.write(strip_volatile(nbformat.read(output, as_version=4)), output)
            if error:
                break
    _write_summary(out, profile, parameters, runs)
    if verbose:
        print(summary_table(runs))
        print(f"executed notebooks and summary.json are in {out}")
    if error:
        raise NotebookFailed(runs[-1].error, runs) from error
    return runs


def parse_parameter(value: str) -> Any:
    """A command-line value as a Python literal when it is one ("5e-5", "True"), else text."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value
