"""Sweeps: grid points and ids, shards covering the grid once, papermill runs, resume, report."""

import json
import os
import textwrap

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from shared import SMALL

from unlearnlib.cli import main
from unlearnlib.course import sweep as sweep_module
from unlearnlib.course.sweep import (
    CHECKPOINT_DIR,
    METRIC_KEYS,
    NOTEBOOK_FILE,
    PARAMETERS_FILE,
    RESULT_KEYS,
    RESULTS_FILE,
    SELECTION_FILE,
    TEMPLATE,
    PointRun,
    grid_points,
    load_grid,
    load_results,
    parse_shard,
    point_id,
    run_sweep,
    shard_points,
    sweep_report,
)
from unlearnlib.models.loading import save_model
from unlearnlib.models.tiny import build_model

#: Two points: one audited (direct probes), one not; a single unlearning step each.
GRID = {"method": ["npo"], "lr": [1e-3], "epochs": [1], "audit_families": [[], ["direct"]]}
FAST = {"MAX_STEPS": 1, "MAX_SAMPLES": 2, "MAX_NEW_TOKENS": 2, "AUDIT_MAX_FACTS": 20}


def test_grid_yaml_is_the_product_of_its_lists(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text("method: npo\nlr: [5.0e-4, 1.0e-3]\nepochs: [2, 4]\nbeta: [0.1, 0.5]\n")
    grid = load_grid(path)
    assert grid["method"] == ["npo"]
    points = grid_points(grid)
    assert len(points) == 8
    assert points[0] == {"method": "npo", "lr": 5e-4, "epochs": 2, "beta": 0.1}
    assert points[1]["beta"] == 0.5  # the last parameter varies fastest
    ids = [point_id(p) for p in points]
    assert len(set(ids)) == 8
    assert ids[0] == "npo_lr0.0005_ep2_b0.1"
    assert all("/" not in i and " " not in i for i in ids)


def test_the_tiny_example_grid_has_eight_points():
    from unlearnlib.paths import REPO_ROOT

    assert len(grid_points(load_grid(REPO_ROOT / "examples" / "grid_tiny.yaml"))) == 8


def test_the_seed_grid_has_54_points_with_the_seeds_own():
    from unlearnlib.paths import REPO_ROOT

    grid = load_grid(REPO_ROOT / "examples" / "grid_seed_1b.yaml")
    assert (grid["epochs"], grid["lr"], grid["alpha"]) == ([5, 10], [1e-5, 2e-5, 5e-5],
                                                           [1.0, 2.0, 5.0])
    assert len(grid["beta"]) == 3 and 0.1 in grid["beta"]
    points = grid_points(grid)
    assert len(points) == 54 == len({point_id(p) for p in points})
    assert {"method": "npo", "lr": 5e-5, "epochs": 10, "alpha": 1.0, "beta": 0.1} in points


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 11])
def test_shards_cover_the_grid_exactly_once(count):
    points = grid_points({"lr": [1, 2, 3, 4], "epochs": [1, 2]})
    shards = [shard_points(points, i, count) for i in range(count)]
    ids = [point_id(p) for shard in shards for p in shard]
    assert sorted(ids) == sorted(point_id(p) for p in points)
    assert len(ids) == len(set(ids))
    assert shards == [shard_points(points, i, count) for i in range(count)]  # deterministic


@pytest.mark.parametrize("text", ["2/2", "-1/2", "1", "a/b", "0/0"])
def test_bad_shards_are_refused(text, tmp_path, capsys):
    with pytest.raises(ValueError):
        parse_shard(text)
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [1.0e-3]\n")
    assert main(["sweep", "run", str(grid), "--out", str(tmp_path), f"--shard={text}"]) == 2
    assert "shard" in capsys.readouterr().err


def test_template_ships_inside_the_package():
    cells = json.loads(TEMPLATE.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for name in ("METHOD", "LR", "EPOCHS", "ALPHA", "BETA", "PROFILE", "OUT_DIR"):
        assert f"{name} = " in source


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer):
    """A small untrained "full" and "retain" model, saved, for fast notebook runs."""
    folder = tmp_path_factory.mktemp("models")
    for seed, role in enumerate(("full", "retain")):
        save_model(build_model(tiny_tokenizer, SMALL, seed=seed), tiny_tokenizer, folder / role)
    return {"FULL_MODEL": str(folder / "full"), "RETAIN_MODEL": str(folder / "retain")}


def _fake_finished(folder, point):
    """A point an earlier, interrupted sweep finished (made-up numbers: it must be skipped)."""
    folder.mkdir(parents=True)
    values = {k: 0.5 for k in ("forget_quality", "model_utility", "privleak")}
    results = {k: {} for k in RESULT_KEYS}
    results.update(status="ok", point=point_id(point), parameters=point, profile="tiny",
                   summary=values, metrics={k: 0.5 for k in METRIC_KEYS})
    (folder / RESULTS_FILE).write_text(json.dumps(results))
    (folder / NOTEBOOK_FILE).write_text("{}")


def test_a_single_pending_point_runs_in_process_on_the_cores_it_may_use(tmp_path, monkeypatch):
    calls = []

    def fake_run_point(point, profile, out, threads, extra, template):  # one job: in-process
        calls.append((point_id(point), threads))
        return PointRun(point_id(point), "ran", 0.0)

    monkeypatch.setattr(sweep_module, "run_point", fake_run_point)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    grid = {"lr": [1, 2]}
    _fake_finished(tmp_path / "lr1", {"lr": 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    runs = run_sweep(grid, out_dir=tmp_path, jobs=4, progress=False)  # one point left: one job
    assert [(r.point, r.status) for r in runs] == [("lr1", "skipped"), ("lr2", "ran")]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    run_sweep(grid, out_dir=tmp_path, jobs=1, progress=False)
    assert calls == [("lr2", 8), ("lr2", 3)]


def _recording_template(path):
    """A point notebook that records where it ran, in a complete results.json (no training)."""
    parameters = new_code_cell('LR = 0\nPROFILE = "tiny"\nOUT_DIR = "."\nPOINT_ID = "point"')
    parameters.metadata["tags"] = ["parameters"]
    record = new_code_cell(textwrap.dedent(f"""
        import json, os
        from pathlib import Path
        results = {{key: {{}} for key in {RESULT_KEYS!r}}}
        results.update(status="ok", point=POINT_ID, parameters={{"lr": LR}}, profile=PROFILE,
                       training={{"threads": os.environ["OMP_NUM_THREADS"],
                                 "process": os.getppid()}})
        Path(OUT_DIR, "results.json").write_text(json.dumps(results))
    """))
    kernel = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    nbformat.write(new_notebook(cells=[parameters, record], metadata=kernel), path)
    return path


def test_parallel_points_run_in_worker_processes_within_the_thread_limit(tmp_path,
                                                                         monkeypatch):
    template = _recording_template(tmp_path / "record.ipynb")
    monkeypatch.setattr(os, "cpu_count", lambda: 8)  # 4 threads per job, but the caller's 1 wins
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "runs"
    runs = run_sweep({"lr": [1, 2]}, out_dir=out, jobs=2, template=template, progress=False)
    assert [(r.point, r.status) for r in runs] == [("lr1", "ran"), ("lr2", "ran")], [
        r.error for r in runs]
    records = [load_results(out / r.point) for r in runs]
    assert [r["parameters"]["lr"] for r in records] == [1, 2]
    assert {r["training"]["threads"] for r in records} == {"1"}
    assert os.getpid() not in {r["training"]["process"] for r in records}  # kernels' parents


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, models):
    """An interrupted sweep resumed: point 0 finished before, point 1 was cut off mid-write."""
    out = tmp_path_factory.mktemp("runs")
    finished, broken = (out / point_id(p) for p in grid_points(GRID))
    _fake_finished(finished, grid_points(GRID)[0])
    broken.mkdir()
    (broken / NOTEBOOK_FILE).write_text("{}")
    (broken / RESULTS_FILE).write_text('{"status": "ok"}')
    stamp = os.stat(finished / NOTEBOOK_FILE).st_mtime_ns
    runs = run_sweep(GRID, "tiny", out, jobs=2, extra={**FAST, **models}, progress=False)
    return out, runs, stamp


def test_an_interrupted_sweep_redoes_only_broken_points(sweep):
    out, runs, stamp = sweep
    assert [r.status for r in runs] == ["skipped", "ran"], [r.error for r in runs]
    finished = out / point_id(grid_points(GRID)[0])
    assert os.stat(finished / NOTEBOOK_FILE).st_mtime_ns == stamp
    assert not (finished / CHECKPOINT_DIR).exists()


def test_a_point_runs_in_its_own_folder(sweep):
    out, _, _ = sweep
    point = grid_points(GRID)[1]
    folder = out / point_id(point)
    results = load_results(folder)
    assert results is not None and set(RESULT_KEYS) <= set(results)
    assert json.loads((folder / NOTEBOOK_FILE).read_text())["cells"]  # executed by papermill
    assert (folder / CHECKPOINT_DIR / "model.safetensors").is_file()
    parameters = json.loads((folder / PARAMETERS_FILE).read_text())
    assert parameters["LR"] == point["lr"] and parameters["PROFILE"] == "tiny"
    assert parameters["AUDIT_FAMILIES"] == ["direct"]
    assert results["parameters"]["method"] == "npo"
    assert results["training"]["global_step"] == 1
    assert 0.0 <= results["summary"]["forget_quality"] <= 1.0
    assert {row["family"] for row in results["audit"]["leak_table"]} == {"direct", "overall"}


def test_report_ranks_by_forget_quality_then_utility(sweep):
    out, _, _ = sweep
    report = sweep_report(out, grid_size=2, prune=True)
    table = report.table
    assert list(table["rank"]) == [1, 2]
    keys = list(zip(table["forget_quality"], table["model_utility"], strict=True))
    assert keys == sorted(keys, reverse=True)
    assert report.best.name == table.loc[0, "point"]
    assert not (out / table.loc[1, "point"] / CHECKPOINT_DIR).exists()  # pruned
    assert report.paths["heatmap"].stat().st_size > 0
    selection = json.loads((out / SELECTION_FILE).read_text())
    assert selection["point"] == report.best.name and selection["grid_size"] == 2
    assert "leak_rate_direct" in table.columns
    assert main(["sweep", "report", str(out)]) == 0
