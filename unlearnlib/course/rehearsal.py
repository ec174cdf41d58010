"""A CPU rehearsal of the `colab-t4` course: every notebook, the GPU profile's code path.

`run_rehearsal` executes notebooks 00-07 through papermill (`runner.run_course`) with the
`colab-t4` profile's settings except the device: CUDA is not required, the full, retain
and audited models are one `small` stand-in (`models.standin`: random weights, the real
Llama-3 tokenizer, vocabulary and chat template), the data is a local copy of the real TOFU
in the Hub layout, and the run is kept small (forget01, one unlearning epoch, a few audit
samples, a two-point sweep).

What it checks: that every step of the GPU path runs on real TOFU and writes what it should,
with the real chat format and answer lengths, LoRA and gradient checkpointing, the key-span
heuristic on real answers, generation up to the profile's ``max_new_tokens``, every audit
family, a two-point sweep and its model card. What it does not check: any number. Random
weights make every metric (forget quality, utility, leak rates) meaningless, and the
notebooks' claims about them are not expected to hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unlearnlib.course.runner import (
    NotebookFailed,
    NotebookRun,
    course_notebooks,
    run_course,
    temporary_environment,
    write_summary,
)
from unlearnlib.models.standin import write_standin
from unlearnlib.paths import HOME_ENV, TOFU_DIR_ENV
from unlearnlib.profiles import get_profile

#: The GPU profile the rehearsal follows.
REHEARSED_PROFILE = "colab-t4"
#: Folders under the rehearsal's output: the stand-in model and the course's home.
STANDIN_DIR = "standin-small"
HOME_DIR = "home"
SWEEP_DIR = "sweep"
#: One thread per kernel: the stand-in's matrices are small, and on a busy 2-core machine
#: two threads spin-wait on each other (a 1-token forward measured 15x slower with two).
KERNEL_ENVIRONMENT = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def rehearsal_overrides(standin: Path, tofu: Path) -> dict[str, Any]:
    """`colab-t4` field overrides for a CPU rehearsal with the stand-in on local TOFU.

    The profile's ``max_new_tokens``, LoRA and gradient checkpointing stay as they are:
    they are what the rehearsal exercises. The rest shrinks the run to CPU size.
    """
    model = str(Path(standin).resolve())
    return {
        "requires_cuda": False,
        "full_model": model,
        "retain_model": model,
        # AUDIT_MODEL's path with a folder in place of the seed's Hub id: 05 and 06 score and
        # audit the stand-in itself (it scores exactly as the retain model: forget quality 1).
        "audited_model": model,
        "second_retain_model": None,
        # The published logs are of the real retain model, not of the stand-in; the local
        # path to them is tested against ../shared/tofu's copy (tests/test_eval_logs.py).
        "published_logs": None,
        "data_source": str(Path(tofu).resolve()),
        "forget_split": "forget01",
        # The 128k-token vocabulary's logits dominate memory: scoring a batch of 8 perturbed
        # sets (7 answers each) peaked at 11 GB per process on CPU, and 04 trains two at a
        # time. Accumulation keeps 8 rows per unlearning step.
        "train_batch_size": 2,
        "gradient_accumulation_steps": 4,
        "eval_batch_size": 4,
        "unlearn_epochs": 1,
        "eval_max_samples": 8,  # TOFU's evaluation and the training curves: 8 rows a split
        "spread_seeds": [],
        "audit": {"n_samples": 2, "n_bootstrap": 100, "relearn_epochs": 1.0,
                  "facts_per_author": 2},
    }


def rehearsal_parameters(standin: Path, tofu: Path, out: Path
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The notebook parameters of a rehearsal: one set for 00-06, one for the sweep (07).

    Two sets because EPOCHS is a number in 04 and the grid's list in 07.
    """
    overrides = rehearsal_overrides(standin, tofu)
    course = {
        "PROFILE_OVERRIDES": overrides,
        "FORGET_SPLIT": "forget01",  # 01's own choice of split
        "EPOCHS": overrides["unlearn_epochs"],  # 04: curves at the start and the end
        "CURVE_EVERY": 1,
        "METHODS": ["ga", "graddiff", "npo", "simnpo"],
    }
    sweep = {
        "PROFILE_OVERRIDES": overrides,
        "LRS": [get_profile(REHEARSED_PROFILE, check_cuda=False).learning_rate],
        "EPOCHS": [1, 2],  # with one learning rate: a two-point grid
        "JOBS": 1,  # one point at a time; on 2 cores a second process only competes
        "AUDIT_FAMILIES": ["direct"],  # on each author's first facts (`facts_per_author`)
        "OUT": str(Path(out).resolve() / SWEEP_DIR),
    }
    return course, sweep


def run_rehearsal(tofu: str | Path, out: str | Path, progress: bool = True) -> list[NotebookRun]:
    """Write the `small` stand-in under `out`, then run the whole course on it (colab-t4).

    `tofu` is a folder of the real TOFU in the Hub layout. Everything the notebooks train or
    write goes under `out` (the course's home is ``out/home``), with the executed notebooks
    and a summary.json of both runs. Raises `runner.NotebookFailed` at the first failing
    notebook, as `run_course` does, its `runs` holding every notebook run so far.
    """
    tofu, out = Path(tofu).resolve(), Path(out).resolve()
    if not (tofu / "full.json").is_file():
        raise FileNotFoundError(f"No TOFU copy in the Hub layout at {tofu} (full.json missing).")
    out.mkdir(parents=True, exist_ok=True)
    standin = out / STANDIN_DIR
    if not (standin / "config.json").is_file():
        write_standin("small", standin)
    (out / HOME_DIR).mkdir(exist_ok=True)
    course, sweep = rehearsal_parameters(standin, tofu, out)
    numbers = [path.name[:2] for path in course_notebooks()]
    runs: list[NotebookRun] = []
    try:
        with temporary_environment({**KERNEL_ENVIRONMENT, HOME_ENV: str(out / HOME_DIR),
                                    TOFU_DIR_ENV: str(tofu)}):
            for only, parameters in ((numbers[:-1], course), (numbers[-1:], sweep)):
                runs += run_course(REHEARSED_PROFILE, out, only=only, parameters=parameters,
                                   progress=progress)
    except NotebookFailed as failed:
        failed.runs[:0] = runs
        runs = failed.runs
        raise
    finally:
        write_summary(out, REHEARSED_PROFILE, {"course": course, "sweep": sweep}, runs)
    return runs
