"""Peak memory and step time of an NPO step: reference as a deep copy vs no second model.

open-unlearning keeps a frozen deep copy of the model as NPO's reference; `unlearnlib` looks
up log pi_ref precomputed once per forget sample (full fine-tuning) instead. Each variant runs
in its own process (peak RSS is per process) on a tiny Llama made large enough for its
weights to show (about 40 M parameters, 160 MB in fp32):

    python benchmarks/npo_memory.py [--hidden 768 --layers 4 --steps 6 --batch 8]

Prints one line per variant, then the last line: one JSON object with both variants' peak
RSS, the memory each added over the loaded model, the median step time, and the ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = ("deep_copy", "precomputed")


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_variant(variant: str, hidden: int, layers: int, steps: int, batch: int) -> dict:
    """One NPO run of `steps` steps; returns peak RSS, RSS added, median step time."""
    import torch
    import transformers
    from transformers import TrainerCallback

    from unlearnlib.data.tofu import load_tofu
    from unlearnlib.models.tiny import build_model, build_tokenizer
    from unlearnlib.profiles import TinyModelSize, get_profile
    from unlearnlib.train.unlearn import (
        ForgetRetainDataset,
        UnlearnTrainer,
        objective,
        unlearning_arguments,
    )

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    size = TinyModelSize(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=8,
                         intermediate_size=4 * hidden)
    model = build_model(tokenizer, size)
    parameters = sum(p.numel() for p in model.parameters())
    forget = load_tofu("forget10", "mini").select(range(steps * batch))
    retain = load_tofu("retain90", "mini").select(range(200))
    profile = get_profile("tiny", train_batch_size=batch, eval_batch_size=batch)
    loaded = _rss_mb()
    reference = copy.deepcopy(model) if variant == "deep_copy" else None

    class StepTimes(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._start)

    timer = StepTimes()
    with tempfile.TemporaryDirectory() as folder:
        pairs = ForgetRetainDataset(forget, retain, tokenizer, seed=0)
        args = unlearning_arguments(profile, folder, len(pairs), max_steps=steps,
                                    warmup_steps=0, logging_strategy="no")
        start = time.perf_counter()  # the precomputed variant scores the forget rows here
        trainer = UnlearnTrainer(model, args, pairs, tokenizer, objective("npo"),
                                 reference_model=reference, callbacks=[timer])
        setup = time.perf_counter() - start
        assert (trainer.reference_log_probs is None) == (variant == "deep_copy")
        trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"variant": variant, "parameters": parameters, "loaded_rss_mb": round(loaded, 1),
            "peak_rss_mb": round(peak, 1), "added_mb": round(peak - loaded, 1),
            "median_step_s": round(statistics.median(timer.times[1:]), 4),
            "setup_s": round(setup, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    settings = [str(v) for v in ("--hidden", args.hidden, "--layers", args.layers,
                                 "--steps", args.steps, "--batch", args.batch)]
    if args.child:
        print(json.dumps(run_variant(args.child, args.hidden, args.layers, args.steps,
                                     args.batch)))
        return
    results = {}
    for variant in VARIANTS:
        child = subprocess.run([sys.executable, __file__, "--child", variant, *settings],
                               capture_output=True, text=True, check=True)
        results[variant] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{variant:>12}: peak RSS {results[variant]['peak_rss_mb']:8.1f} MB, "
              f"added over the loaded model {results[variant]['added_mb']:8.1f} MB, "
              f"median step {results[variant]['median_step_s']:.3f} s")
    copied, looked_up = results["deep_copy"], results["precomputed"]
    summary = {
        "parameters": copied["parameters"],
        "weights_mb_fp32": round(copied["parameters"] * 4 / 2**20, 1),
        "deep_copy": copied,
        "precomputed": looked_up,
        "peak_rss_ratio_copy_over_precomputed": round(
            copied["peak_rss_mb"] / looked_up["peak_rss_mb"], 3),
        "added_memory_ratio_copy_over_precomputed": round(
            copied["added_mb"] / looked_up["added_mb"], 3),
        "step_time_ratio_copy_over_precomputed": round(
            copied["median_step_s"] / looked_up["median_step_s"], 3),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
