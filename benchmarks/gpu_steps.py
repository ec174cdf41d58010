"""Measured GPU memory and time of each GPU step of the course, beside `unlearnlib memory`.

Run it when a GPU is at hand (it is one short script so that a lent GPU's minutes go to
measuring). It writes a Llama-3.2-1B stand-in (`models.standin`: the exact architecture,
random weights, the real Llama-3 tokenizer), points a GPU profile's models at it and the
data at a local TOFU copy, and runs each step the way the notebooks do:

* evaluate (02, 05): the notebook's three models held; one batch generated at the profile's
  `max_new_tokens`, one batch of perturbed answers scored;
* unlearn (04, 07): GA and NPO for a few steps (`pipeline.unlearn_from_profile`);
* audit (06): every probe family but relearn on one batch of facts, then relearn.

For each it records `torch.cuda.max_memory_allocated` (reset before the step) and seconds a
step, beside `memory.course_steps`' estimate for the same step. Random weights generate to
the token limit, so generation times are the worst case. On a CPU (`--size small`) the same
steps run, to check the script; memory is then not measured.

    python benchmarks/gpu_steps.py --profile colab-t4 [--size 1b] [--tofu ../shared/tofu]
    python benchmarks/gpu_steps.py --size small --eval-batch-size 2   # a check on a CPU

Prints one line a step; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from unlearnlib.audit.probes import forget_facts
from unlearnlib.audit.run import FAMILIES, run_audit
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.generation import generate_answers
from unlearnlib.evaluation.likelihood import score_perturbed_set
from unlearnlib.memory import GIB, course_steps
from unlearnlib.models.loading import load_for_profile
from unlearnlib.models.standin import write_standin
from unlearnlib.profiles import Profile, get_profile, resolve_device
from unlearnlib.train.pipeline import unlearn_from_profile

REPO = Path(__file__).resolve().parents[1]
UNLEARN_STEPS = 4


@contextlib.contextmanager
def measured(device: torch.device, record: dict[str, Any]) -> Iterator[None]:
    """Time the block and, on a GPU, its peak allocated memory (GiB) into `record`."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        record["measured_gib"] = torch.cuda.max_memory_allocated(device) / GIB
    record["seconds"] = time.perf_counter() - start


def _estimates(profile: Profile) -> dict[tuple[str, str], float]:
    return {(s.step, s.phase): s.memory.total / GIB for s in course_steps(profile)}


def evaluate_steps(profile: Profile, source: str, device: torch.device) -> list[dict]:
    """Generation and scoring with the three models notebook 05 holds."""
    held = [load_for_profile(source, profile) for _ in range(3)]
    model, tokenizer = held[0]
    rows = load_tofu(f"{profile.forget_split}_perturbed", profile.data_source)
    batch = rows.select(range(min(profile.eval_batch_size, len(rows))))
    questions = list(batch["question"])
    generate = {"step": "evaluate (02, 05)", "phase": "generate"}
    with measured(device, generate):
        generate_answers(model, tokenizer, questions, max_new_tokens=profile.max_new_tokens,
                         batch_size=profile.eval_batch_size)
    score = {"step": "evaluate (02, 05)", "phase": "score"}
    with measured(device, score):
        score_perturbed_set(model, tokenizer, batch, batch_size=profile.eval_batch_size)
    return [generate, score]


def unlearn_steps(profile: Profile, out: Path, device: torch.device) -> list[dict]:
    """A few unlearning steps of GA and of NPO, as notebook 04 runs them."""
    records = []
    for method, step in (("ga", "unlearn: GA (04)"),
                         ("npo", "unlearn: GradDiff / NPO / SimNPO (04, 07)")):
        record = {"step": step, "phase": "train"}
        with measured(device, record):
            trainer = unlearn_from_profile(profile, out / method, method, progress=False,
                                           max_steps=UNLEARN_STEPS)
        record["seconds"] /= trainer.state.global_step
        records.append(record)
    return records


def audit_steps(profile: Profile, source: str, device: torch.device) -> list[dict]:
    """The probe families on one batch of facts with notebook 06's three models, then relearn."""
    models = {name: load_for_profile(source, profile) for name in ("full", "retain", "npo")}
    facts = forget_facts(profile.forget_split, profile.data_source)
    # One batch of facts from as many authors as fit (relearning needs two or more).
    facts = facts.groupby("author", sort=False).head(1).head(max(2, profile.eval_batch_size))
    probes = [f for f in FAMILIES if f != "relearn"]
    records = []
    for phase, families in (("probes", probes), ("relearn", ["relearn"])):
        record = {"step": "audit (06)", "phase": phase}
        with measured(device, record):
            run_audit(models, profile, families=families, facts=facts, progress=False)
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="colab-t4", choices=["colab-t4", "gpu-full"])
    parser.add_argument("--size", default="1b", choices=["1b", "small"])
    parser.add_argument("--tofu", default=str(REPO.parent / "shared" / "tofu"))
    parser.add_argument("--eval-batch-size", type=int, default=None,
                        help="default: the profile's (a CPU check needs a small one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        standin = str(write_standin(args.size, Path(tmp) / "standin"))
        profile = get_profile(args.profile, requires_cuda=False, full_model=standin,
                              retain_model=standin, audited_model=standin,
                              data_source=args.tofu)
        if args.eval_batch_size:
            profile = profile.replace(eval_batch_size=args.eval_batch_size)
        device = resolve_device(profile)
        steps: list[Callable[[], list[dict]]] = [
            lambda: evaluate_steps(profile, standin, device),
            lambda: unlearn_steps(profile, Path(tmp) / "runs", device),
            lambda: audit_steps(profile, standin, device)]
        estimates = _estimates(profile)
        records = []
        for run in steps:
            for record in run():
                record["estimated_gib"] = estimates.get((record["step"], record["phase"]))
                records.append(record)
                measured_gib = record.get("measured_gib")
                print(f"{record['step']:<42} {record['phase']:<8} {record['seconds']:8.2f} s  "
                      f"measured {measured_gib if measured_gib is None else f'{measured_gib:.2f}'}"
                      f" GiB, estimated {record['estimated_gib']:.2f} GiB", flush=True)
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu
    print(json.dumps({"profile": args.profile, "size": args.size, "device": gpu,
                      "steps": records}))


if __name__ == "__main__":
    main()
