"""How fast is the forget-set likelihood evaluation? unlearnlib against a plain loop.

The work: for every question of TOFU-mini's forget10_perturbed (100 questions), the average
loss of its answer, paraphrased answer and 5 perturbed answers (7 sequences, all given the
original question), on the tiny Llama, on CPU.

* plain loop: one sequence at a time, whole chat, no padding (what one writes first);
* unlearnlib, batched: `score_answers(share_prompts=False)`, whole chats batched by length;
* unlearnlib: `score_perturbed_set`, which computes each question's prompt once (KV cache)
  and scores its 7 answers against copies of the cache.

Each method runs ``--repeats`` times, interleaved, and the best time counts (the CPU is
shared, so the minimum is the least noisy estimate). The last line printed is one JSON
object with the figures.

    python benchmarks/eval_speed.py [--repeats 3] [--batch-size 64] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import numpy as np
import torch

from unlearnlib.data.formatting import encode_example
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.likelihood import score_answers, score_perturbed_set
from unlearnlib.models.tiny import build_model, build_tokenizer
from unlearnlib.profiles import get_profile


def plain_loop(model: torch.nn.Module, tokenizer, questions: list[str],
               answers: list[str]) -> np.ndarray:
    """Average loss of each answer, one unpadded sequence at a time."""
    losses = []
    with torch.inference_mode():
        for question, answer in zip(questions, answers, strict=True):
            example = encode_example(tokenizer, question, answer)
            logits = model(input_ids=torch.tensor([example.input_ids])).logits[0, :-1]
            labels = torch.tensor(example.labels[1:])
            scored = labels != -100
            logprobs = logits[scored].float().log_softmax(-1)
            losses.append(-logprobs.gather(-1, labels[scored, None]).mean().item())
    return np.array(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=get_profile("tiny").eval_batch_size)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer = build_tokenizer()
    model = build_model(tokenizer).eval()
    dataset = load_tofu("forget10_perturbed", "mini")
    questions: list[str] = []
    answers: list[str] = []
    for row in dataset:
        variants = [row["answer"], row["paraphrased_answer"], *row["perturbed_answer"]]
        questions.extend([row["question"]] * len(variants))
        answers.extend(variants)

    methods: dict[str, Callable[[], np.ndarray]] = {
        "plain_loop": lambda: plain_loop(model, tokenizer, questions, answers),
        "unlearnlib_batched": lambda: score_answers(
            model, tokenizer, questions, answers, batch_size=args.batch_size,
            share_prompts=False).avg_loss,
        "unlearnlib": lambda: _flatten(score_perturbed_set(
            model, tokenizer, dataset, batch_size=args.batch_size)),
    }
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = method()
            seconds[name].append(time.perf_counter() - start)
    disagreement = max(float(np.max(np.abs(results[name] - results["plain_loop"])))
                       for name in methods)

    n_questions = len(dataset)
    best = {name: min(times) for name, times in seconds.items()}
    print(f"{n_questions} questions x 7 answers, tiny Llama, CPU ({torch.get_num_threads()} "
          f"threads), best of {args.repeats}")
    for name in methods:
        print(f"  {name:<20} {best[name]:7.3f} s  {n_questions / best[name]:8.1f} questions/s  "
              f"(runs: {', '.join(f'{t:.3f}' for t in seconds[name])})")
    ratio = best["plain_loop"] / best["unlearnlib"]
    print(f"unlearnlib is {ratio:.1f}x the plain loop "
          f"({best['plain_loop'] / best['unlearnlib_batched']:.1f}x without prompt sharing); "
          f"largest avg-loss difference {disagreement:.2e}")
    print(json.dumps({
        "questions": n_questions,
        "sequences": len(answers),
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        **{f"{name}_seconds": round(best[name], 4) for name in methods},
        **{f"{name}_questions_per_s": round(n_questions / best[name], 2) for name in methods},
        "speedup_vs_plain_loop": round(ratio, 2),
        "speedup_batched_only": round(best["plain_loop"] / best["unlearnlib_batched"], 2),
        "max_abs_avg_loss_difference": disagreement,
    }))


def _flatten(scores) -> np.ndarray:
    """Per question [answer, paraphrased, perturbed...] average losses, as the plain order."""
    return np.concatenate([scores.answer.avg_loss[:, None], scores.paraphrased.avg_loss[:, None],
                           scores.perturbed_avg_loss], axis=1).ravel()


if __name__ == "__main__":
    main()
