"""The reliability review's 41 bad inputs and its interrupts, one test each.

Every bad input must end in one `unlearnlib: error: <what and what to do>` line with exit
status 2, found before a model loads or a kernel starts; Ctrl-C (a real SIGINT to a real
subprocess) must end in `unlearnlib: interrupted: <what was kept, how to go on>` with 130,
and the rerun must go on from what was kept.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from safetensors.torch import load_file
from shared import LOG_ROOT, SMALL

from unlearnlib import cache
from unlearnlib.cli import main
from unlearnlib.course.runner import KERNEL_NAME
from unlearnlib.course.sweep import RESULT_KEYS, run_point
from unlearnlib.models import loading
from unlearnlib.models.loading import save_model
from unlearnlib.models.tiny import build_model
from unlearnlib.train import zoo

LOGS = LOG_ROOT
FULL_LOG = LOGS / "tofu_Llama-3.2-1B-Instruct_full" / "evals_forget10" / "TOFU_EVAL.json"
RETAIN90_LOG = LOGS / "tofu_Llama-3.2-1B-Instruct_retain90" / "TOFU_EVAL.json"
RETAIN95_LOG = LOGS / "tofu_Llama-3.2-1B-Instruct_retain95" / "TOFU_EVAL.json"
#: Quick unlearning of the small model: 8 forget rows, one step an epoch.
QUICK = ["--max-forget", "8", "--epochs", "2"]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """Trained models and caches go to a fresh folder, never the checkout's artifacts/."""
    monkeypatch.setenv("UNLEARNLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UNLEARNLIB_TOFU_DIR", raising=False)
    return tmp_path / "home"


@pytest.fixture()
def nothing_loads(monkeypatch) -> None:
    """Fail the test if a model loads or a kernel starts: bad input must be refused first."""
    import papermill

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the input was checked")

    for owner, name in ((loading, "load_model"), (zoo, "load_zoo_model"),
                        (papermill, "execute_notebook")):
        monkeypatch.setattr(owner, name, refuse)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory, tiny_tokenizer) -> Path:
    """A small saved model: a real `--model` folder that loads and trains in seconds."""
    return save_model(build_model(tiny_tokenizer, SMALL), tiny_tokenizer,
                      tmp_path_factory.mktemp("small") / "model")


def cli(capsys, *arguments: object) -> tuple[int, str]:
    """Run the CLI in this process; its exit status and stderr."""
    code = main([str(a) for a in arguments])
    return code, capsys.readouterr().err


def assert_one_error(code: int, err: str, message: str) -> None:
    """Exit status 2, no traceback, and the last line is the one `unlearnlib: error:` line."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert lines[-1].startswith("unlearnlib: error: "), err
    assert message in lines[-1], lines[-1]
    assert sum(line.startswith("unlearnlib: error") for line in lines) == 1


# --------------------------------------------------------------------------- 1-2: splits


def test_01_unknown_split_in_eval_run_before_the_model_loads(capsys, small_model, tmp_path,
                                                              nothing_loads):
    code, err = cli(capsys, "eval", "run", "--model", small_model, "--forget-split", "forget07",
                    "--out", tmp_path / "out")
    assert_one_error(code, err, "forget_split must be one of ['forget01', 'forget05', "
                                "'forget10'], not 'forget07'")
    assert not (tmp_path / "out").exists()


def test_02_unknown_split_as_a_notebook_parameter(capsys, tmp_path, nothing_loads):
    code, err = cli(capsys, "course", "run", "--only", "01", "-p", "FORGET_SPLIT", "forget07",
                    "--out", tmp_path / "nb")
    assert_one_error(code, err, "-p FORGET_SPLIT must be one of forget01, forget05, forget10")
    assert not (tmp_path / "nb").exists()


# --------------------------------------------------------------------------- 3-11: data


def _rows(file: Path) -> list[dict]:
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _write_rows(file: Path, rows: list) -> None:
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _drop_column_everywhere(folder: Path) -> None:
    file = folder / "forget10_perturbed.json"
    _write_rows(file, [{k: v for k, v in r.items() if k != "paraphrased_answer"}
                       for r in _rows(file)])


def _change_row(config: str, line: int, change) -> callable:
    def damage(folder: Path) -> None:
        file = folder / f"{config}.json"
        rows = _rows(file)
        rows[line - 1] = change(rows[line - 1])
        _write_rows(file, rows)
    return damage


def _replace_line(config: str, line: int, text: bytes) -> callable:
    def damage(folder: Path) -> None:
        file = folder / f"{config}.json"
        lines = file.read_bytes().splitlines(keepends=True)
        lines[line - 1] = text + b"\n"
        file.write_bytes(b"".join(lines))
    return damage


def _as_json_array(folder: Path) -> None:
    file = folder / "full.json"
    file.write_text(json.dumps(_rows(file), indent=2))


DATA_CASES = {
    "03 file missing": (lambda f: (f / "holdout05.json").unlink(),
                        "holdout05.json is missing"),
    "04 column missing in every row": (_drop_column_everywhere,
                                       "forget10_perturbed.json lacks column(s) "
                                       "['paraphrased_answer'] at line 1"),
    "05 column missing in one row": (
        _change_row("retain90", 3, lambda r: {k: v for k, v in r.items() if k != "answer"}),
        "retain90.json lacks column(s) ['answer'] at line 3"),
    "05 null in one row": (_change_row("forget10", 2, lambda r: {**r, "answer": None}),
                           "forget10.json, line 2, column 'answer': expected a string, got null"),
    "06 empty file": (lambda f: (f / "forget05.json").write_text(""),
                      "forget05.json has no rows"),
    "07 invalid JSON line": (_replace_line("world_facts", 7, b'{"question": oops}'),
                             "world_facts.json, line 7: not valid JSON"),
    "08 line not an object": (_replace_line("full", 4, b'"just a string"'),
                              "full.json, line 4: a TOFU row is a JSON object"),
    "09 int where a string belongs": (_change_row("retain90", 5, lambda r: {**r, "answer": 123}),
                                      "retain90.json, line 5, column 'answer': expected a "
                                      "string, got 123"),
    "09 string where a list belongs": (
        _change_row("retain_perturbed", 1, lambda r: {**r, "perturbed_answer": "one"}),
        "column 'perturbed_answer': expected a list of strings"),
    "10 byte not UTF-8": (_replace_line("full", 2, b'{"question": "caf\xe9", "answer": "a"}'),
                          "full.json, line 2: not UTF-8 text (byte 0xe9"),
    "11 JSON array, not JSON lines": (_as_json_array, "TOFU files are JSON lines"),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_03_to_11_damaged_data_folder(case, capsys, small_tofu, tmp_path):
    folder = shutil.copytree(small_tofu, tmp_path / "tofu")
    damage, message = DATA_CASES[case]
    damage(folder)
    code, err = cli(capsys, "data", "info", "--source", folder)
    assert_one_error(code, err, message)
    assert str(folder) in err  # the file is named


# --------------------------------------------------------------------------- 12-14: profiles, Hub


def test_12_unknown_profile_creates_nothing(capsys, tmp_path, nothing_loads):
    code, err = cli(capsys, "course", "run", "--profile", "tinyy", "--only", "03",
                    "--out", tmp_path / "nb")
    assert_one_error(code, err, "Unknown profile 'tinyy'. Valid profiles: tiny")
    assert not (tmp_path / "nb").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_13_gpu_profile_on_a_cpu(capsys, tmp_path, nothing_loads):
    code, err = cli(capsys, "unlearn", "--profile", "colab-t4", "--out", tmp_path / "u")
    assert_one_error(code, err, "needs a CUDA GPU and none is visible")
    assert not (tmp_path / "u").exists()


def test_14_unreachable_hub_names_the_offline_sources(capsys):
    code, err = cli(capsys, "data", "info", "--source", "hub")
    assert_one_error(code, err, "Could not reach the Hugging Face Hub for locuslab/TOFU")
    assert "source='mini'" in err


# --------------------------------------------------------------------------- 15-18: eval logs


def _cut(tmp_path: Path, source: Path, size: int) -> Path:
    path = tmp_path / f"cut-{size}.json"
    path.write_bytes(source.read_bytes()[:size])
    return path


def test_15_retain_log_of_another_split(capsys):
    code, err = cli(capsys, "eval", "summarize", FULL_LOG, "--retain-log", RETAIN95_LOG)
    assert_one_error(code, err, "they were evaluated on different forget splits")


@pytest.mark.parametrize("which", ["eval", "retain"])
def test_16_truncated_log(which, capsys, tmp_path):
    cut = _cut(tmp_path, FULL_LOG if which == "eval" else RETAIN90_LOG, 1_000_000)
    logs = [cut, "--retain-log", RETAIN90_LOG] if which == "eval" else [
        FULL_LOG, "--retain-log", cut]
    code, err = cli(capsys, "eval", "summarize", *logs)
    assert_one_error(code, err, f"{cut} is not valid JSON")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is not valid JSON"),
    (bytes(range(256)), "is not UTF-8 text"),
    (b"[1, 2]", "holds a JSON list, not an evaluation log"),
    (b'{"forget_quality": 0.5, "model_utility": 0.6}', "holds only summary numbers"),
    (None, "evaluation log not found"),
])
def test_17_not_an_eval_log(content, message, capsys, tmp_path):
    path = tmp_path / "log.json"
    if content is not None:
        path.write_bytes(content)
    code, err = cli(capsys, "eval", "summarize", path)
    assert_one_error(code, err, message)


def test_18_log_missing_entries(capsys, tmp_path):
    log = json.loads(RETAIN90_LOG.read_text())
    log.pop("mia_min_k")
    path = tmp_path / "retain.json"
    path.write_text(json.dumps(log))
    code, err = cli(capsys, "eval", "summarize", FULL_LOG, "--retain-log", path)
    assert_one_error(code, err, "has no mia_min_k scores")


# --------------------------------------------------------------------------- 19-20: models


def test_19_corrupt_cached_model_is_detected(tmp_path, tiny_tokenizer):
    folder = save_model(build_model(tiny_tokenizer, SMALL), tiny_tokenizer, tmp_path / "m")
    weights = folder / cache.WEIGHTS
    record = folder / cache.BUILD_RECORD
    record.write_text(json.dumps({"weights_sha256": cache.file_sha256(weights)}))
    assert cache.is_complete(folder)
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte inside the tensor data, same size
    weights.write_bytes(bytes(data))
    assert not cache.is_complete(folder)
    record.write_text('{"weights_sha')
    assert not cache.is_complete(folder)


@pytest.mark.parametrize("command", ["eval", "audit", "unlearn"])
def test_20_corrupt_model_folder_is_refused_before_loading(command, capsys, small_model,
                                                           tmp_path, nothing_loads):
    folder = shutil.copytree(small_model, tmp_path / "corrupt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    arguments = {"eval": ["eval", "run", "--model", folder],
                 "audit": ["audit", "--model", folder, "--families", "direct"],
                 "unlearn": ["unlearn", "--model", folder]}[command]
    code, err = cli(capsys, *arguments, "--out", tmp_path / "out")
    assert_one_error(code, err, f"{weights} is damaged or incomplete")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 21-26: unlearning


def test_21_diverging_training_stops_and_saves_no_model(capsys, small_model, tmp_path,
                                                        one_torch_thread):
    out = tmp_path / "huge"
    code, err = cli(capsys, "unlearn", "--model", small_model, "--out", out, "--lr", "1e6",
                    "--max-forget", "8", "--epochs", "6", "--save-steps", "0")
    assert_one_error(code, err, "Training diverged at step ")
    assert "Lower the learning rate (it is 1e+06)" in err
    assert not (out / "model.safetensors").exists() and not (out / "unlearn_log.json").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--lr=inf"], "learning rate must be a finite number > 0 (e.g. 5e-4), not inf"),
    (["--lr=nan"], "learning rate must be a finite number > 0 (e.g. 5e-4), not nan"),
    (["--lr=-1"], "learning rate must be a finite number > 0 (e.g. 5e-4), not -1.0"),
    (["--beta", "0"], "beta of npo must be a finite number > 0, not 0.0 (the loss divides"),
    (["--method", "simnpo", "--beta", "-1"], "beta of simnpo must be a finite number > 0"),
    (["--epochs", "0"], "epochs must be a number >= 1, not 0 (0 epochs would save the "
                        "starting model as if it were unlearned)"),
    (["--max-forget", "-1"], "--max-forget must be a number >= 1, not -1"),
    (["--max-forget", "0"], "--max-forget must be a number >= 1, not 0"),
    (["--max-steps", "0"], "--max-steps must be a number >= 1, not 0"),
    (["--method", "dpo"], "argument --method: invalid choice: 'dpo'"),
], ids=["22-lr-inf", "22-lr-nan", "22-lr-negative", "23-beta-0", "23-simnpo-beta",
        "24-epochs-0", "25-max-forget-negative", "26-max-forget-0", "max-steps-0", "method"])
def test_22_to_26_bad_hyperparameters_before_any_model_loads(arguments, message, capsys,
                                                             tmp_path, nothing_loads):
    code, err = cli(capsys, "unlearn", "--out", tmp_path / "u", *arguments)
    assert_one_error(code, err, message)
    assert not (tmp_path / "u").exists()


# --------------------------------------------------------------------------- 27-29: notebooks


@pytest.mark.parametrize(("only", "parameter", "message"), [
    ("03", ["NOT_A_PARAM", "1"], "-p NOT_A_PARAM: not a parameter of 03_npo_derivation. "
                                 "Parameters: PROFILE, BETA, BETAS, PROFILE_OVERRIDES."),
    ("04", ["UNLEARN_EPOCHS", "5"], "-p UNLEARN_EPOCHS: not a parameter of 04_unlearning. "
                                    "Did you mean EPOCHS?"),
    ("03", ["BETA", "abc"], "-p BETA takes a number (default 0.1), not 'abc'"),
    ("03", ["BETA", "0"], "-p BETA must be a finite number > 0, not 0"),
    ("04", ["EPOCHS", "0"], "-p EPOCHS must be a number >= 1, not 0"),
    ("04", ["METHODS", "['npo', 'dpo']"], "-p METHODS must be one of ga, graddiff, npo, simnpo"),
    ("03", ["PROFILE", "gpu-full"], "Pass the profile with profile=... (--profile)"),
    ("03", ["PROFILE_OVERRIDES", "{'lr': 1}"], "-p PROFILE_OVERRIDES: Profile has no field(s) "
                                               "['lr']. Valid fields:"),
    ("03", ["PROFILE_OVERRIDES", "5"], "-p PROFILE_OVERRIDES takes a dict of profile fields"),
    ("99", [], "No notebook numbered ['99']"),
], ids=["27-unknown", "27-readme-typo", "28-type", "28-beta-0", "28-epochs-0", "28-method",
        "29-profile", "29-overrides-field", "29-overrides-type", "29-only-99"])
def test_27_to_29_notebook_parameters_before_any_kernel(only, parameter, message, capsys,
                                                        tmp_path, nothing_loads):
    options = ["-p", *parameter] if parameter else []
    code, err = cli(capsys, "course", "run", "--only", only, *options, "--out", tmp_path / "nb")
    assert_one_error(code, err, message)
    assert not (tmp_path / "nb").exists()


# --------------------------------------------------------------------------- 30-35: environment


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_30_tofu_dir_variable_pointing_nowhere(kind, capsys, tmp_path, monkeypatch):
    target = tmp_path / "nowhere"
    if kind == "file":
        target.write_text("not a folder")
    monkeypatch.setenv("UNLEARNLIB_TOFU_DIR", str(target))
    code, err = cli(capsys, "data", "info")
    problem = "is a file, not a folder" if kind == "file" else "does not exist"
    assert_one_error(code, err, f"{target} (from $UNLEARNLIB_TOFU_DIR) {problem}")


def test_31_missing_shared_data_is_one_message_at_the_top(tmp_path, monkeypatch):
    """Without ../shared, pytest's header says once which tests will fail and why."""
    spec = importlib.util.spec_from_file_location("conftest_copy",
                                                  Path(__file__).with_name("conftest.py"))
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    assert conftest.pytest_report_header() == []  # ../shared is here
    monkeypatch.setattr(conftest, "SHARED_TOFU", tmp_path / "shared" / "tofu")
    (header,) = conftest.pytest_report_header()
    assert str(tmp_path / "shared" / "tofu") in header and "will fail" in header


def test_32_unusable_home_folder(capsys, monkeypatch):
    monkeypatch.setenv("UNLEARNLIB_HOME", "/dev/null/x")
    code, err = cli(capsys, "models", "build")
    assert_one_error(code, err, "$UNLEARNLIB_HOME=/dev/null/x is not a folder unlearnlib can "
                                "create or write to")


def test_33_hub_model_while_offline(capsys, tmp_path):
    code, err = cli(capsys, "eval", "run", "--model", "meta-llama/Llama-3.2-1B-Instruct",
                    "--max-samples", "2", "--out", tmp_path / "out")
    assert_one_error(code, err, "Could not load 'meta-llama/Llama-3.2-1B-Instruct': it is "
                                "not a local folder")


def test_34_gated_model_without_a_token(capsys, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    def gated(*args, **kwargs):
        raise OSError("401 Client Error. Access to model meta-llama/x is restricted: gated repo")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", gated)
    code, err = cli(capsys, "eval", "run", "--model", "meta-llama/x", "--out", tmp_path / "o")
    assert_one_error(code, err, "meta-llama/x is gated or private. Accept its licence")


@pytest.mark.parametrize("name", ["runs/npo_typo", "./npo_typo", "~/no_such_unlearnlib_model"])
def test_35_misspelled_local_path_is_never_sent_to_the_hub(name, capsys, tmp_path, monkeypatch,
                                                            nothing_loads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    start = time.perf_counter()
    code, err = cli(capsys, "eval", "run", "--model", name, "--out", tmp_path / "out")
    assert_one_error(code, err, "does not exist: pass a folder written by save_pretrained")
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------------- 36-39: grids


@pytest.mark.parametrize(("text", "message"), [
    ("method: [npo\nlr: [1.0e-3]\n", "line 2, column 3: not valid YAML"),
    ("method: npo\n\tlr: [1.0e-3]\n", "line 2, column 1: not valid YAML"),
], ids=["bracket", "tab"])
def test_36_malformed_grid_yaml(text, message, capsys, tmp_path, nothing_loads):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    code, err = cli(capsys, "sweep", "run", grid, "--out", tmp_path / "runs")
    assert_one_error(code, err, message)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("text", "options", "message"), [
    ("- npo\n", [], "a grid is a YAML mapping of parameter: [values, ...]"),
    ("method: []\n", [], "parameters ['method'] have no values"),
    (None, [], "No such file or directory"),
    ("lr: [1.0e-3]\n", ["--shard", "2/2"], "shard '2/2': need n >= 1 and 0 <= i < n"),
], ids=["list", "empty", "missing", "shard"])
def test_37_bad_grid_shapes(text, options, message, capsys, tmp_path, nothing_loads):
    grid = tmp_path / "grid.yaml"
    if text is not None:
        grid.write_text(text)
    code, err = cli(capsys, "sweep", "run", grid, "--out", tmp_path / "runs", *options)
    assert_one_error(code, err, message)


@pytest.mark.parametrize(("text", "extra", "message"), [
    ("method: [npo, npoo]\n", [], "-p METHOD must be one of ga, graddiff, npo, simnpo, "
                                  "not 'npoo'"),
    ("lrr: [1.0e-3]\n", [], "grid key or -p LRR: not a parameter of sweep_point. Did you "
                            "mean LR?"),
    ("lr: [1.0e-3, 0]\n", [], "-p LR must be a finite number > 0"),
    ("lr: [1.0e-3]\n", ["-p", "MAX_STEP", "2"], "-p MAX_STEP: not a parameter"),
    ("profile: [tiny]\n", [], "['PROFILE'] are set by the sweep itself"),
], ids=["38-method", "39-key", "lr-range", "extra-key", "reserved"])
def test_38_39_bad_grid_points_before_any_kernel(text, extra, message, capsys, tmp_path,
                                                 nothing_loads):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    code, err = cli(capsys, "sweep", "run", grid, "--out", tmp_path / "runs", *extra)
    assert_one_error(code, err, message)
    assert not (tmp_path / "runs").exists()


def test_a_failed_point_reports_its_error_not_a_traceback(tmp_path):
    template = _point_template(tmp_path / "point.ipynb")
    run = run_point({"lr": 1}, "tiny", tmp_path / "runs", extra={"FAIL": True},
                    template=template)
    assert (run.status, run.error) == ("failed", "ValueError: lr 1 is not allowed here")


# --------------------------------------------------------------------------- 40-41: resume


def _unlearn(capsys, model: Path, out: Path, *options: str) -> tuple[int, str]:
    return cli(capsys, "unlearn", "--model", model, "--out", out, *QUICK, *options)


def test_40_resume_without_a_checkpoint(capsys, small_model, tmp_path):
    code, err = _unlearn(capsys, small_model, tmp_path / "u", "--resume")
    assert_one_error(code, err, "No complete checkpoint in ")
    assert "run without --resume to start from step 0" in err


def test_41_half_written_newest_checkpoint_falls_back(capsys, small_model, tmp_path,
                                                     one_torch_thread):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _unlearn(capsys, small_model, whole)[0] == 0
    assert _unlearn(capsys, small_model, cut)[0] == 0
    checkpoints = cut / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2"]  # the newest two are kept
    (checkpoints / "checkpoint-2" / "trainer_state.json").unlink()  # killed mid-save
    (cut / "model.safetensors").unlink()
    code, err = _unlearn(capsys, small_model, cut, "--resume")
    assert code == 0, err
    assert f"skipping {checkpoints / 'checkpoint-2'}, which is incomplete" in err
    assert _same_weights(whole, cut)


def test_a_rerun_with_other_settings_does_not_resume_silently(capsys, small_model, tmp_path,
                                                              one_torch_thread):
    out = tmp_path / "u"
    assert _unlearn(capsys, small_model, out)[0] == 0
    code, err = _unlearn(capsys, small_model, out, "--lr", "1e-3")
    assert_one_error(code, err, "holds checkpoints of a run with other settings (learning_rate)")
    code, err = _unlearn(capsys, small_model, out, "--lr", "1e-3", "--no-resume")
    assert code == 0, err


def _same_weights(first: Path, second: Path) -> bool:
    a, b = (load_file(str(p / "model.safetensors")) for p in (first, second))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- interrupts


def _start(*arguments: object, env: dict[str, str]) -> subprocess.Popen:
    """The CLI in its own process group, as a terminal runs it (Ctrl-C reaches the group)."""
    return subprocess.Popen([sys.executable, "-m", "unlearnlib", *map(str, arguments)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(condition, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _interrupt(process: subprocess.Popen) -> tuple[int, str, str]:
    """Ctrl-C: SIGINT to the whole process group; exit status, stdout and stderr."""
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _interrupted_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert lines[-1].startswith("unlearnlib: interrupted: "), err
    return lines[-1]


def test_interrupted_unlearn_resumes_when_the_same_command_runs_again(capsys, small_model,
                                                                      tmp_path, home,
                                                                      one_torch_thread):
    options = ["--max-forget", "8", "--epochs", "40"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli(capsys, "unlearn", "--model", small_model, "--out", whole, *options)[0] == 0
    process = _start("unlearn", "--model", small_model, "--out", cut, *options,
                     env={"UNLEARNLIB_HOME": str(home), "OMP_NUM_THREADS": "1"})
    _wait_for(lambda: (cut / "checkpoints" / "checkpoint-3" / "trainer_state.json").is_file(),
              process)
    code, _, err = _interrupt(process)
    assert code == 130
    line = _interrupted_line(err)
    assert "is kept; run the same command again to resume from it" in line
    assert not (cut / "model.safetensors").exists()
    code, err = cli(capsys, "unlearn", "--model", small_model, "--out", cut, *options)
    assert code == 0, err
    assert _same_weights(whole, cut)


def _point_template(path: Path) -> Path:
    """A sweep point's notebook that sleeps SLEEP seconds, then writes its results
    (or fails with FAIL): real kernels and papermill, no training."""
    parameters = new_code_cell('LR = 0\nSLEEP = 0\nFAIL = False\nPROFILE = "tiny"\n'
                               'OUT_DIR = "."\nPOINT_ID = "point"')
    parameters.metadata["tags"] = ["parameters"]
    record = new_code_cell(textwrap.dedent(f"""
        import json, time
        from pathlib import Path
        if FAIL:
            raise ValueError(f"lr {{LR}} is not allowed here")
        time.sleep(SLEEP)
        results = {{key: {{}} for key in {RESULT_KEYS!r}}}
        results.update(status="ok", point=POINT_ID, parameters={{"lr": LR}}, profile=PROFILE)
        Path(OUT_DIR, "results.json").write_text(json.dumps(results))
    """))
    kernel = {"kernelspec": {"name": KERNEL_NAME, "language": "python",
                             "display_name": "Python 3"}}
    nbformat.write(new_notebook(cells=[parameters, record], metadata=kernel), path)
    return path


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupted_sweep_starts_no_more_points_and_reports_the_finished(jobs, tmp_path):
    template = _point_template(tmp_path / "point.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [1, 2, 3, 4]\n")
    out = tmp_path / "runs"
    command = ["sweep", "run", grid, "--out", out, "--jobs", jobs, "--template", template,
               "-p", "SLEEP", 3]
    process = _start(*command, env={"OMP_NUM_THREADS": "1"})
    _wait_for(lambda: (out / "lr1" / "results.json").is_file(), process)
    code, stdout, err = _interrupt(process)
    assert code == 130, err
    line = _interrupted_line(err)
    finished = [p.name for p in sorted(out.iterdir()) if (p / "results.json").is_file()]
    assert "lr1" in finished and f"{len(finished)} of 4 point(s) finished" in line
    assert all(name in line for name in finished)
    assert not (out / "lr4").exists()  # never started (nor lr3 with one job)
    assert jobs > 1 or not (out / "lr3").exists()
    rerun = subprocess.run([sys.executable, "-m", "unlearnlib", *map(str, command[:-3])],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr
    assert [line.split()[0] for line in rerun.stdout.splitlines()[:4]] == [
        "skipped" if f"lr{k}" in finished else "ran" for k in range(1, 5)]


def _notebook(path: Path, source: str) -> Path:
    parameters = new_code_cell('PROFILE = "tiny"\nSLEEP = 0')
    parameters.metadata["tags"] = ["parameters"]
    kernel = {"kernelspec": {"name": KERNEL_NAME, "language": "python",
                             "display_name": "Python 3"}}
    nbformat.write(new_notebook(cells=[parameters, new_code_cell(source)], metadata=kernel),
                   path)
    return path


def test_interrupted_course_run_keeps_the_finished_notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "00_quick.ipynb", "print('done')")
    _notebook(folder / "01_slow.ipynb", "import time\ntime.sleep(SLEEP)")
    out = tmp_path / "out"
    process = _start("course", "run", "--notebooks", folder, "--out", out, "-p", "SLEEP", 60,
                     env={"OMP_NUM_THREADS": "1"})
    _wait_for(lambda: (out / "01_slow.ipynb").is_file(), process)
    time.sleep(3)  # the kernel is in the sleeping cell
    code, stdout, err = _interrupt(process)
    assert code == 130, err
    assert f"notebooks from {folder}" in stdout
    line = _interrupted_line(err)
    assert line.endswith(f"1 finished notebook(s) and summary.json are in {out}; run the rest "
                         "with the same command and --only 01")
    summary = json.loads((out / "summary.json").read_text())
    assert [run["notebook"] for run in summary["notebooks"]] == ["00_quick"]


def test_a_plain_install_finds_notebooks_beside_the_caller_or_in_the_package(tmp_path,
                                                                             monkeypatch):
    from unlearnlib.course import runner

    monkeypatch.setattr(runner, "REPO_ROOT", None)  # a plain (non-editable) install
    monkeypatch.chdir(tmp_path)
    assert runner.notebooks_dir() == runner.SHIPPED_NOTEBOOKS
    assert (runner.SHIPPED_NOTEBOOKS / "00_welcome.ipynb").is_file()
    (tmp_path / "notebooks").mkdir()
    _notebook(tmp_path / "notebooks" / "00_mine.ipynb", "")
    assert runner.notebooks_dir() == tmp_path / "notebooks"
    with pytest.raises(FileNotFoundError, match="with --notebooks DIR"):
        runner.notebooks_dir(tmp_path / "elsewhere")


def test_the_example_grid_is_found_without_a_checkout(tmp_path, monkeypatch):
    from unlearnlib.course.sweep import load_grid

    monkeypatch.chdir(tmp_path)
    assert load_grid("examples/grid_tiny.yaml")["lr"] == [5e-4, 1e-3]


def test_a_sweep_checks_its_model_folders_before_any_kernel(capsys, small_model, tmp_path,
                                                            nothing_loads):
    folder = shutil.copytree(small_model, tmp_path / "full")
    (folder / "model.safetensors").write_bytes(b"")
    grid = tmp_path / "grid.yaml"
    grid.write_text("lr: [1.0e-3]\n")
    code, err = cli(capsys, "sweep", "run", grid, "--out", tmp_path / "runs",
                    "-p", "FULL_MODEL", folder)
    assert_one_error(code, err, f"{folder / 'model.safetensors'} is damaged or incomplete")
