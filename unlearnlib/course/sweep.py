"""Hyper-parameter sweeps: a grid of unlearning runs, one papermill execution per point.

A grid is a YAML mapping of notebook parameters to lists of values (a scalar is a list of
one); its points are the product of the lists, in the file's order. Each point runs the
packaged notebook `templates/sweep_point.ipynb` (unlearn from the cached full model,
evaluate against the cached retain model; or a dedicated `template`) in its own folder
``OUT/<point-id>/``, which ends up with the executed notebook, ``parameters.json``,
``results.json`` and the checkpoint.

* resumable: a point whose results.json is complete is skipped; any other is redone;
* ``jobs``: points run in parallel processes, each kernel limited to
  ``cpu_count // jobs`` threads (OMP_NUM_THREADS, and never more than the caller's own
  OMP_NUM_THREADS), so two jobs on two cores do not fight; one job runs in this process;
* ``shard=(i, n)``: point k belongs to shard ``k mod n`` (i = 0 .. n-1), so n machines
  cover the grid exactly once.

`sweep_report` ranks the finished points by forget quality (model utility breaks ties),
draws a heatmap and records the rank-1 point in ``OUT/selection.json`` for the model card.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from unlearnlib.cache import atomic_dir, atomic_write_text, config_key
from unlearnlib.course.notebook import course_environment
from unlearnlib.course.runner import (
    KERNEL_ARGUMENTS,
    KERNEL_NAME,
    check_parameters,
    ctrl_c_flag,
    temporary_environment,
)
from unlearnlib.paths import PACKAGE_DIR
from unlearnlib.profiles import Profile, get_profile

if TYPE_CHECKING:  # pandas and matplotlib are imported by the report only
    import pandas as pd

#: The packaged notebook that unlearns and evaluates one grid point.
TEMPLATE = Path(__file__).parent / "templates" / "sweep_point.ipynb"
PARAMETERS_FILE = "parameters.json"
RESULTS_FILE = "results.json"
NOTEBOOK_FILE = "sweep_point.ipynb"
#: The folder, inside a point's folder, that holds its unlearned model.
CHECKPOINT_DIR = "model"
#: Written by `sweep_report` in the sweep's folder: the rank-1 point and how it was chosen.
SELECTION_FILE = "selection.json"
REPORT_FILE = "sweep_report.csv"
HEATMAP_FILE = "heatmap.png"
SELECTION_RULE = ("highest forget quality (KS test p-value of the truth ratios against the "
                  "retain model); ties broken by the higher model utility")
#: What a complete results.json holds (written by `point_results`).
RESULT_KEYS = ("status", "point", "parameters", "profile", "summary", "metrics", "training",
               "models", "seconds")
#: TOFU_EVAL.json entries copied into results.json (their agg_value).
METRIC_KEYS = ("forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio", "retain_Q_A_Prob",
               "retain_Q_A_ROUGE", "retain_Truth_Ratio")
#: Short names of the report's parameter columns, in id order.
_ABBREVIATIONS = {"method": "", "lr": "lr", "epochs": "ep", "alpha": "a", "beta": "b"}


# --------------------------------------------------------------------------- the grid


def load_grid(path: str | Path) -> dict[str, list[Any]]:
    """A grid YAML file as {parameter: [values]} (scalars become one-value lists).

    `examples/NAME.yaml` that is not here is read from the copy shipped in the package.
    """
    path = Path(path)
    shipped = PACKAGE_DIR / "examples" / path.name
    if not path.is_file() and path.parent.name == "examples" and shipped.is_file():
        path = shipped
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}{where}: not valid YAML ({problem}); a grid is a mapping of "
                         "parameter: [values, ...], indented with spaces.") from error
    if not isinstance(data, Mapping) or not data:
        raise ValueError(f"{path}: a grid is a YAML mapping of parameter: [values, ...]")
    grid = {str(k): list(v) if isinstance(v, list) else [v] for k, v in data.items()}
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise ValueError(f"{path}: parameters {empty} have no values")
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a fixed order (last parameter fastest)."""
    names = list(grid)
    return [dict(zip(names, values, strict=True))
            for values in itertools.product(*(grid[n] for n in names))]


def _value_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "+".join(_value_text(v) for v in value) or "none"
    text = format(value, "g") if isinstance(value, float) else str(value)
    return "".join(c if c.isalnum() or c in ".-+" else "-" for c in text)


def point_id(point: Mapping[str, Any]) -> str:
    """A readable, folder-safe id, e.g. ``npo_lr0.0005_ep4_a1_b0.1`` (same point, same id)."""
    return "_".join(f"{_ABBREVIATIONS.get(k, k)}{_value_text(v)}" for k, v in point.items())


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n), with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError as error:
        raise ValueError(f"--shard takes i/n (e.g. 0/2), not {text!r}") from error
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need n >= 1 and 0 <= i < n")
    return index, count


def shard_points(points: Sequence[dict[str, Any]], index: int, count: int
                 ) -> list[dict[str, Any]]:
    """The points of shard `index` of `count`: point k goes to shard k mod count."""
    return [p for k, p in enumerate(points) if k % count == index]


# --------------------------------------------------------------------------- one point


def point_results(point: str, parameters: Mapping[str, Any], profile: str,
                  evaluation: Any, trainer: Any, models: Mapping[str, str],
                  seconds: Mapping[str, float], audit: Any = None) -> dict[str, Any]:
    """What a point's notebook measured, as results.json holds it.

    `evaluation` is `evaluate.Evaluation`, `trainer` the `UnlearnTrainer` after training,
    `audit` an optional `run.AuditResult` whose rows for the unlearned model are kept.
    """
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    results: dict[str, Any] = {
        "status": "ok",
        "point": point,
        "parameters": dict(parameters),
        "profile": profile,
        "summary": dict(evaluation.summary),
        "metrics": {k: evaluation.eval_log[k]["agg_value"] for k in METRIC_KEYS},
        "training": {"global_step": trainer.state.global_step,
                     "final_loss": losses[-1] if losses else None},
        "models": dict(models),
        "seconds": {k: round(float(v), 1) for k, v in seconds.items()},
    }
    if audit is not None:
        table = audit.table[audit.table["model"] != "retain"]
        results["audit"] = {"leak_table": table.to_dict(orient="records"),
                            "membership": audit.membership.to_dict(orient="records")}
    return results


def write_results(folder: str | Path, results: Mapping[str, Any]) -> Path:
    """Write results.json atomically (a half-written file never looks finished)."""
    return atomic_write_text(Path(folder) / RESULTS_FILE,
                             json.dumps(results, indent=2, default=float) + "\n")


def load_results(folder: str | Path) -> dict[str, Any] | None:
    """A point's results.json if it is complete (status ok, every key), else None."""
    path = Path(folder) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or results.get("status") != "ok":
        return None
    return results if all(k in results for k in RESULT_KEYS) else None


def retain_reference(sweep_dir: str | Path, load_retain: Callable[[], tuple[Any, Any]],
                     profile: Profile, retain_source: str | Path, **settings: Any
                     ) -> dict[str, Any]:
    """The retain model's TOFU_EVAL.json, evaluated once per sweep folder and settings.

    Every point compares against the same retain model, so the first point to get here
    evaluates it (`load_retain()` gives model and tokenizer) under a file lock and the others
    read ``sweep_dir/reference-<key>/TOFU_EVAL.json``; the key hashes the retain model, the
    profile's evaluation fields (not its unlearning lr and epochs, which the grid varies) and
    the evaluation `settings` (passed on to `evaluate.evaluate_model`).
    """
    from filelock import FileLock

    from unlearnlib.evaluation.eval_logs import load_eval_log
    from unlearnlib.evaluation.evaluate import evaluate_model

    shaping = {f: getattr(profile, f) for f in ("name", "data_source", "forget_split",
                                                 "precision", "eval_batch_size",
                                                 "max_new_tokens")}
    key = config_key({"retain": str(retain_source), **shaping, **settings})
    folder = Path(sweep_dir) / f"reference-{key}"
    with FileLock(str(folder) + ".lock"):
        if not (folder / "TOFU_EVAL.json").is_file():
            model, tokenizer = load_retain()
            with atomic_dir(folder) as partial:
                evaluate_model(model, tokenizer, profile, out_dir=partial, **settings)
        return load_eval_log(folder / "TOFU_EVAL.json")


@dataclass(frozen=True)
class PointRun:
    """One grid point of a sweep: its id, "ran", "skipped" or "failed", seconds, error."""

    point: str
    status: str
    seconds: float
    error: str | None = None


def run_point(point: Mapping[str, Any], profile: str, out_dir: str | Path, threads: int = 1,
              extra: Mapping[str, Any] | None = None,
              template: str | Path = TEMPLATE) -> PointRun:
    """Execute the point's notebook in ``out_dir/<point-id>/`` unless its results are complete.

    A broken folder (no or incomplete results, a failed notebook) is emptied and redone.
    `extra` adds notebook parameters that are not part of the point's id (e.g. MAX_SAMPLES).
    """
    import papermill

    name = point_id(point)
    folder = Path(out_dir) / name
    if load_results(folder) is not None:
        return PointRun(name, "skipped", 0.0)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    parameters = {**{k.upper(): v for k, v in point.items()}, **(extra or {}),
                  "PROFILE": profile, "OUT_DIR": str(folder.resolve()), "POINT_ID": name}
    (folder / PARAMETERS_FILE).write_text(json.dumps(parameters, indent=2) + "\n")
    settings = get_profile(profile, **(extra or {}).get("PROFILE_OVERRIDES") or {})
    env = {**course_environment(settings), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    try:
        with temporary_environment(env):
            papermill.execute_notebook(str(template), str(folder / NOTEBOOK_FILE),
                                       parameters=parameters, kernel_name=KERNEL_NAME,
                                       progress_bar=False, cwd=str(folder),
                                       extra_arguments=list(KERNEL_ARGUMENTS))
    except Exception as error:  # recorded: the sweep goes on with the other points
        return PointRun(name, "failed", round(time.perf_counter() - start, 1),
                        _error_text(error))
    seconds = round(time.perf_counter() - start, 1)
    if load_results(folder) is None:
        return PointRun(name, "failed", seconds, f"the notebook wrote no complete {RESULTS_FILE}")
    return PointRun(name, "ran", seconds)


def _error_text(error: Exception) -> str:
    """`ename: evalue` of a failed cell (papermill's message is the whole traceback), else the
    exception's type and first line."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        return f"{error.ename}: {error.evalue}"
    return f"{type(error).__name__}: {str(error).strip().partition(chr(10))[0]}"


#: Parameters the sweep sets itself for every point.
RESERVED_PARAMETERS = ("PROFILE", "OUT_DIR", "POINT_ID")


def check_grid(points: Sequence[Mapping[str, Any]], extra: Mapping[str, Any],
               template: str | Path = TEMPLATE) -> None:
    """Refuse grid keys and -p names the template does not declare, reserved names, and
    values of the wrong kind or range (`runner.check_parameters`), before any kernel starts."""
    names = {k.upper() for point in points[:1] for k in point} | set(extra)
    reserved = sorted(names & set(RESERVED_PARAMETERS))
    if reserved:
        raise ValueError(f"{reserved} are set by the sweep itself: use --profile and --out.")
    for point in points:
        check_parameters([template], {**{k.upper(): v for k, v in point.items()}, **extra},
                         given_as="grid key or -p")


def _run_point_in_worker(point: Mapping[str, Any], *args: Any) -> PointRun:
    """`run_point` in a pool worker: Ctrl-C stops the point (recorded as failed, redone by
    the next run), and the worker, idle again, goes back to ignoring it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_point(point, *args)
    except KeyboardInterrupt:
        # The notebook client's abandoned tasks would log their tracebacks later.
        logging.getLogger("asyncio").disabled = True
        return PointRun(point_id(point), "failed", 0.0, "interrupted")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_order(submit: Callable[[Mapping[str, Any]], concurrent.futures.Future[PointRun]],
              points: Sequence[Mapping[str, Any]], jobs: int, stop: threading.Event
              ) -> Iterator[PointRun]:
    """Run `points` through `submit`, at most `jobs` at a time, yielding results in order.

    Only `jobs` are ever submitted (a pool would mark queued ones as running, beyond
    cancelling), and the wait is sliced, so after Ctrl-C no further point starts.
    """
    futures: list[concurrent.futures.Future[PointRun]] = []
    for index in range(len(points)):
        while True:
            running = [f for f in futures if not f.done()]
            while len(futures) < len(points) and len(running) < jobs and not stop.is_set():
                futures.append(submit(points[len(futures)]))
                running.append(futures[-1])
            if futures[index].done():
                break
            if stop.is_set():
                raise KeyboardInterrupt
            concurrent.futures.wait(running, timeout=0.2,
                                    return_when=concurrent.futures.FIRST_COMPLETED)
        yield futures[index].result()


def _kernel_threads(jobs: int) -> int:
    """Threads per point's kernel: the cores shared among `jobs`, at most the caller's
    OMP_NUM_THREADS (on a machine shared with other work, more threads spin-wait)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ceiling = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(ceiling)) if ceiling.isdigit() and int(ceiling) > 0 else threads


def run_sweep(grid: Mapping[str, Sequence[Any]] | str | Path, profile: str = "tiny",
              out_dir: str | Path = "runs", jobs: int = 1, shard: tuple[int, int] = (0, 1),
              extra: Mapping[str, Any] | None = None, progress: bool = True,
              template: str | Path = TEMPLATE) -> list[PointRun]:
    """Run this shard's grid points (skipping finished ones), `jobs` at a time.

    `grid` is a YAML path or {parameter: [values]}; `template` is the notebook each point
    runs (a dedicated one must write a complete results.json). Returns one `PointRun` per
    point of the shard, in grid order.
    """
    # An unknown or unavailable profile fails before any notebook
    get_profile(profile, **(extra or {}).get("PROFILE_OVERRIDES") or {})
    grid = load_grid(grid) if isinstance(grid, str | Path) else grid
    check_grid(grid_points(grid), extra or {}, template)
    points = shard_points(grid_points(grid), *shard)
    ids = [point_id(p) for p in points]
    if len(set(ids)) != len(ids):
        raise ValueError(f"grid points share an id: {sorted(i for i in ids if ids.count(i) > 1)}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    pending = [p for p in points if load_results(Path(out_dir) / point_id(p)) is None]
    jobs = max(1, min(jobs, len(pending)))
    threads = _kernel_threads(jobs)
    start = time.perf_counter()
    waiting = {point_id(p) for p in pending}
    runs: list[PointRun] = []
    try:
        with contextlib.ExitStack() as stack:  # on Ctrl-C, waits for the points running
            stop = stack.enter_context(ctrl_c_flag())
            if jobs == 1:  # no worker process to start: it would import torch and papermill
                finished = (run_point(p, profile, str(out_dir), threads, extra, template)
                            for p in pending)
            else:
                # Idle workers ignore Ctrl-C (it would kill them); a running point stops.
                pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                    jobs, mp_context=multiprocessing.get_context("spawn"),
                    initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)))
                finished = _in_order(lambda p: pool.submit(
                    _run_point_in_worker, p, profile, str(out_dir), threads, extra, template),
                    pending, jobs, stop)
            for name in ids:  # pending keeps grid order, so `finished` yields in this order
                if stop.is_set():  # a Ctrl-C that landed where Python had to ignore it
                    raise KeyboardInterrupt
                runs.append(next(finished) if name in waiting
                            else PointRun(name, "skipped", 0.0))
                if progress:
                    run = runs[-1]
                    print(f"{run.status:>7} {run.point} ({run.seconds:.0f} s)"
                          + (f": {run.error}" if run.error else ""), flush=True)
    except KeyboardInterrupt as interrupt:
        # What a rerun skips: the points with a complete results.json.
        done = [name for name in ids if load_results(Path(out_dir) / name) is not None]
        raise KeyboardInterrupt(
            f"{len(done)} of {len(ids)} point(s) finished and are kept in {out_dir}"
            f"{': ' + ', '.join(done) if done else ''}; run the same command again to "
            "run the others") from interrupt
    if progress:
        failed = sum(r.status == "failed" for r in runs)
        print(f"{len(runs)} points in {time.perf_counter() - start:.0f} s with {jobs} job(s), "
              f"{threads} thread(s) each; {failed} failed")
    return runs


# --------------------------------------------------------------------------- the report


def sweep_table(out_dir: str | Path) -> pd.DataFrame:
    """Every finished point of a sweep folder, ranked: forget quality, then model utility.

    Columns: rank, point, the grid's parameters, forget_quality, model_utility, privleak,
    the forget/retain probability and ROUGE, and ``leak_rate_<family>`` when audited.
    """
    import pandas as pd

    rows = []
    for folder in sorted(p for p in Path(out_dir).iterdir() if p.is_dir()):
        results = load_results(folder)
        if results is None:
            continue
        row: dict[str, Any] = {"point": results["point"], **results["parameters"]}
        row.update({k: results["summary"].get(k)
                    for k in ("forget_quality", "model_utility", "privleak")})
        metrics = results["metrics"]
        row.update(forget_prob=metrics["forget_Q_A_Prob"],
                   forget_rouge=metrics["forget_Q_A_ROUGE"],
                   retain_prob=metrics["retain_Q_A_Prob"],
                   retain_rouge=metrics["retain_Q_A_ROUGE"])
        for entry in results.get("audit", {}).get("leak_table", []):
            if entry["statistic"] == "leak_rate":
                row[f"leak_rate_{entry['family']}"] = entry["estimate"]
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"No finished sweep point (with a complete {RESULTS_FILE}) "
                                f"under {out_dir}")
    table = pd.DataFrame(rows).sort_values(["forget_quality", "model_utility", "point"],
                                           ascending=[False, False, True], na_position="last")
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.reset_index(drop=True)


@dataclass(frozen=True)
class SweepReport:
    """`sweep_report`'s result: the ranked table, the rank-1 point's folder, the files written."""

    table: pd.DataFrame
    best: Path
    paths: dict[str, Path]


def sweep_report(out_dir: str | Path, grid_size: int | None = None, prune: bool = False,
                 heatmap: tuple[str, str] = ("epochs", "lr")) -> SweepReport:
    """Rank a sweep folder, write its table, heatmap and selection.json; keep rank 1.

    `grid_size` is the number of points of the grid (default: the finished ones found).
    `prune=True` deletes every other point's checkpoint (their results stay).
    """
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    table = sweep_table(out_dir)
    best = out_dir / table.loc[0, "point"]
    paths = {"table": out_dir / REPORT_FILE, "selection": out_dir / SELECTION_FILE}
    table.to_csv(paths["table"], index=False)
    x, y = heatmap
    if {x, y} <= set(table.columns):
        from unlearnlib.plots import plot_heatmap

        ax = plot_heatmap(table, x=x, y=y)
        paths["heatmap"] = out_dir / HEATMAP_FILE
        ax.figure.savefig(paths["heatmap"], dpi=120, bbox_inches="tight")
        plt.close(ax.figure)
    selection = {"point": best.name, "rule": SELECTION_RULE,
                 "grid_size": grid_size if grid_size is not None else len(table),
                 "finished_points": len(table),
                 "ranking": table["point"].tolist()}
    paths["selection"].write_text(json.dumps(selection, indent=2) + "\n")
    if prune:
        for name in table["point"].iloc[1:]:
            shutil.rmtree(out_dir / name / CHECKPOINT_DIR, ignore_errors=True)
    return SweepReport(table=table, best=best, paths=paths)

