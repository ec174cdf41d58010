"""GPU-hours of one point of the seed's 54-point grid (`examples/grid_seed_1b.yaml`), estimated.

No GPU was measured for this: the estimate counts the work from the real data and the real
tokenizer, then prices it with two stated throughput assumptions.

* Work: the tokens of every chat the sweep notebook trains on and scores, counted with
  Meta's Llama-3 tokenizer on real TOFU forget10 (`../shared/tofu`, or --tofu): per
  unlearning epoch each forget row and one retain row; the evaluation's scored answers
  (answer, paraphrase and perturbed answers of the forget, retain, real-authors and
  world-facts sets, the holdout set for membership inference), and its greedy generations,
  taken to be as long as the gold answers (the profile caps them at `max_new_tokens`).
* Price: training and scoring at `--tflops` effective bf16 TFLOP/s (6 N flops a trained
  token, 2 N a scored one, N = Llama-3.2-1B's parameters; NPO's reference is scored once,
  before training, under full fine-tuning) and generation at `--decode-ms` per decoding step
  of a batch of `eval_batch_size` (HF `generate` on a 1B model is bound by step overhead,
  not flops). The defaults (`ASSUMED`: a T4 for colab-t4, an A100 for gpu-full) are
  assumptions, not measurements; pass a GPU's measured numbers to replace them.

    python benchmarks/grid_hours.py [--profile gpu-full] [--tflops TF] [--decode-ms MS]

Prints a table per epoch count; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml

from unlearnlib.data.formatting import encode_examples, encode_prompt
from unlearnlib.data.tofu import RETAIN_OF_FORGET, load_tofu
from unlearnlib.memory import llama_3_2_1b_config, parameter_count
from unlearnlib.models.llama3_tokenizer import build_llama3_tokenizer
from unlearnlib.profiles import get_profile

REPO = Path(__file__).resolve().parents[1]
GRID = REPO / "examples" / "grid_seed_1b.yaml"
#: Scored sets of one evaluation: (config, answer columns scored with each prompt).
SCORED = {"forget10_perturbed": ("answer", "paraphrased_answer", "perturbed_answer"),
          "retain_perturbed": ("answer", "paraphrased_answer", "perturbed_answer"),
          "real_authors_perturbed": ("answer", "perturbed_answer"),
          "world_facts_perturbed": ("answer", "perturbed_answer"),
          "holdout10": ("answer",)}
#: Assumed throughput per profile: effective TFLOP/s of training and scoring (about a third of
#: the card's peak: a T4's 65 fp16, an A100's 312 bf16) and milliseconds a decoding step.
ASSUMED = {"colab-t4": (20.0, 40.0), "gpu-full": (100.0, 25.0)}
GENERATED = ("forget10_perturbed", "retain_perturbed", "real_authors_perturbed",
             "world_facts_perturbed")


def _chat_tokens(tokenizer, questions: list[str], answers: list[str]) -> int:
    return sum(len(e.input_ids) for e in encode_examples(tokenizer, questions, answers))


def scored_tokens(tokenizer, source: Path) -> int:
    """Tokens of every (question, answer) pair one evaluation scores."""
    total = 0
    for config, columns in SCORED.items():
        rows = load_tofu(config, source)
        pairs = [(question, answer) for column in columns
                 for question, value in zip(rows["question"], rows[column], strict=True)
                 for answer in (value if isinstance(value, list) else [value])]
        total += _chat_tokens(tokenizer, [q for q, _ in pairs], [a for _, a in pairs])
    return total


def decode_steps(tokenizer, source: Path, batch_size: int, max_new_tokens: int) -> int:
    """Greedy decoding steps of one evaluation: each batch runs to its longest answer."""
    steps = 0
    for config in GENERATED:
        rows = load_tofu(config, source)
        answers = tokenizer(list(rows["answer"]), add_special_tokens=False)["input_ids"]
        lengths = [min(max_new_tokens, len(ids) + 1) for ids in answers]  # + end of turn
        steps += sum(max(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="gpu-full", choices=["colab-t4", "gpu-full"])
    parser.add_argument("--tofu", default=str(REPO.parent / "shared" / "tofu"))
    parser.add_argument("--tflops", type=float, default=None,
                        help="effective TFLOP/s of training and scoring (default: ASSUMED)")
    parser.add_argument("--decode-ms", type=float, default=None,
                        help="milliseconds a decoding step of one batch (default: ASSUMED)")
    args = parser.parse_args()
    args.tflops = args.tflops or ASSUMED[args.profile][0]
    args.decode_ms = args.decode_ms or ASSUMED[args.profile][1]
    profile = get_profile(args.profile, check_cuda=False)
    source = Path(args.tofu)
    tokenizer = build_llama3_tokenizer()
    n = parameter_count(llama_3_2_1b_config())
    forget = load_tofu(profile.forget_split, source)
    retain = load_tofu(RETAIN_OF_FORGET[profile.forget_split], source)
    forget_tokens = _chat_tokens(tokenizer, forget["question"], forget["answer"])
    retain_mean = _chat_tokens(tokenizer, retain["question"], retain["answer"]) / len(retain)
    epoch_tokens = forget_tokens + retain_mean * len(forget)
    reference = 0 if profile.use_lora else 2 * n * forget_tokens  # LoRA: in every step
    lora_extra = 2 * n * forget_tokens if profile.use_lora else 0
    scoring_flops = 2 * n * scored_tokens(tokenizer, source)
    steps = decode_steps(tokenizer, source, profile.eval_batch_size, profile.max_new_tokens)
    evaluate_hours = (scoring_flops / (args.tflops * 1e12) + steps * args.decode_ms / 1e3) / 3600
    prompt = len(encode_prompt(tokenizer, forget["question"][0]))
    grid = yaml.safe_load(GRID.read_text())
    points = math.prod(len(v) for v in grid.values() if isinstance(v, list))
    hours = {}
    print(f"{args.profile}: N = {n:,} parameters; forget {len(forget)} rows, {forget_tokens:,} "
          f"tokens (a prompt alone: {prompt}); {steps:,} decoding steps an evaluation")
    print(f"assumed: {args.tflops:g} TFLOP/s effective, {args.decode_ms:g} ms a decoding step")
    print(f"{'epochs':>6}  {'unlearn h':>9}  {'evaluate h':>10}  {'point h':>7}  points")
    for epochs in grid["epochs"]:
        train_flops = epochs * (6 * n * epoch_tokens + lora_extra) + reference
        unlearn_hours = train_flops / (args.tflops * 1e12) / 3600
        share = points // len(grid["epochs"])
        hours[epochs] = {"unlearn": unlearn_hours, "evaluate": evaluate_hours,
                         "point": unlearn_hours + evaluate_hours, "points": share}
        print(f"{epochs:>6}  {unlearn_hours:>9.3f}  {evaluate_hours:>10.3f}  "
              f"{unlearn_hours + evaluate_hours:>7.3f}  {share}")
    total = sum(h["point"] * h["points"] for h in hours.values())
    print(f"the whole grid: {points} points, {total:.1f} GPU-hours")
    print(json.dumps({"profile": args.profile, "assumed_tflops": args.tflops,
                      "assumed_decode_ms": args.decode_ms, "points": points,
                      "hours_per_point": {str(k): round(v["point"], 3) for k, v in hours.items()},
                      "grid_gpu_hours": round(total, 2)}))


if __name__ == "__main__":
    main()
