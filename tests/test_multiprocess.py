"""The same unlearning code in two processes: DDP over gloo on a CPU, through accelerate.

`accelerate launch --cpu --num_processes 2` starts ONE process unless an MPI launcher is set up
(accelerate 1.x runs multi-CPU jobs through mpirun); `--multi_gpu` uses torch's own launcher
(torchrun), which starts two processes and falls back to the gloo backend without CUDA.
"""

import json
import os
import socket
import subprocess
import sys

from shared import SMALL

from unlearnlib.models.loading import load_model, save_model
from unlearnlib.models.tiny import build_model


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_npo_runs_in_two_processes(tiny_tokenizer, tmp_path):
    start = save_model(build_model(tiny_tokenizer, SMALL), tiny_tokenizer, tmp_path / "start")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "unlearnlib", "unlearn", "--method", "npo", "--model", str(start),
        "--out", str(out), "--max-forget", "16", "--max-steps", "3", "--save-steps", "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNLIB_HOME": str(tmp_path / "home")}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    record = json.loads((out / "unlearn_log.json").read_text())
    assert record["world_size"] == 2 and record["global_step"] == 3
    assert record["objective"]["method"] == "npo"
    losses = [entry["loss"] for entry in record["log_history"] if "loss" in entry]
    assert losses and all(abs(loss) < 1e3 for loss in losses)
    assert "(2 process(es))" in result.stdout  # printed by the main process only, once
    assert result.stdout.count("Unlearned with") == 1
    assert (out / "checkpoints" / "checkpoint-3" / "model.safetensors").is_file()
    trained = dict(load_model(out).named_parameters())
    initial = dict(load_model(start).named_parameters())
    assert any((trained[name] - initial[name]).abs().max() > 0 for name in initial)
