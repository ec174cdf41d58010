"""Do the course's claims hold for any seed? Re-run every computation a claim rests on.

The notebooks state a result only where `unlearnlib.course.claims` checks it in a checked cell. A
claim that held in one lucky run would tell a student with another machine a wrong story, so
this benchmark repeats, for each unlearning seed (the starting models are the shipped ones),
what the claims are computed from, with the notebooks' own parameter defaults:

* notebook 04: the four methods' short runs with training curves (`compare_methods`);
* notebook 05: the course's NPO model (`ensure_unlearned`) evaluated against the retain model;
* notebook 06: the leak audit of full, retain and NPO models.

It prints a table of claims by seed and, last, one JSON object
``{"claims": {name: hold_rate}, "min_hold_rate": x, ...}``. The course keeps a claim only at
a hold rate of 0.9 or more over 10 seeds.

    python benchmarks/claims.py [--seeds 10] [--jobs 2]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import papermill

from unlearnlib.audit.run import run_audit
from unlearnlib.course import claims
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.eval_logs import recompute_metrics
from unlearnlib.evaluation.evaluate import evaluate_model
from unlearnlib.evaluation.likelihood import truth_ratios
from unlearnlib.models.loading import load_model, torch_threads
from unlearnlib.parallel import map_in_processes
from unlearnlib.profiles import Profile, get_profile
from unlearnlib.train.curves import compare_methods
from unlearnlib.train.pipeline import ensure_unlearned
from unlearnlib.train.zoo import load_zoo_model

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_defaults(name: str) -> dict[str, Any]:
    """The parameters cell's values of a notebook, as the course runs it by default."""
    parameters = papermill.inspect_notebook(str(NOTEBOOKS / name))
    return {key: ast.literal_eval(spec["default"]) for key, spec in parameters.items()}


def seed_claims(profile: Profile, reference: dict[str, Any], full_summary: dict[str, float],
                retain_ratios: list[float]) -> dict[str, bool]:
    """Every claim of notebooks 04 to 06 for one unlearning seed (the profile's)."""
    comparison = notebook_defaults("04_unlearning.ipynb")
    history = compare_methods(profile, comparison["METHODS"], retain_ratios,
                              epochs=comparison["EPOCHS"],
                              every_n_epochs=comparison["CURVE_EVERY"], jobs=1)
    found = claims.method_claims(history)
    full, tokenizer = load_zoo_model(profile, "full")
    retain, _ = load_zoo_model(profile, "retain")
    npo = load_model(ensure_unlearned(profile, "npo", progress=False)).eval()
    npo_summary = evaluate_model(npo, tokenizer, profile, reference=reference,
                                 progress=False).summary
    found += claims.unlearning_claims(full_summary, npo_summary)
    audit = run_audit({"full": (full, tokenizer), "retain": (retain, tokenizer),
                       "npo": (npo, tokenizer)}, profile, progress=False)
    found += claims.audit_claims(audit.estimates("novel_recall_leak"),
                                 audit.estimates("leak_rate"))
    result: dict[str, Any] = {claim.name: claim.holds for claim in found}
    result.update(forget_quality=npo_summary["forget_quality"],
                  model_utility=npo_summary["model_utility"])
    return result


def spread_hold_rate(runs: pd.DataFrame, width: int) -> float:
    """Notebook 05's spread claim on every window of `width` consecutive seeds."""
    windows = [runs.iloc[start:start + width] for start in range(len(runs) - width + 1)]
    return float(pd.Series([all(c.holds for c in claims.spread_claims(window))
                             for window in windows]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="unlearning seeds 0..N-1")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run side by side")
    args = parser.parse_args()
    start = time.perf_counter()
    profile = get_profile("tiny")
    with torch_threads(1):
        retain, tokenizer = load_zoo_model(profile, "retain")
        retain_eval = evaluate_model(retain, tokenizer, profile, progress=False)
        full, _ = load_zoo_model(profile, "full")
        full_eval = evaluate_model(full, tokenizer, profile, reference=retain_eval.eval_log,
                                   progress=False)
        full_summary = full_eval.summary
        perturbed = load_tofu(f"{profile.forget_split}_perturbed", profile.data_source)
        retain_ratios = truth_ratios(retain, tokenizer, perturbed,
                                     batch_size=profile.eval_batch_size).tolist()
    calls = [(profile.replace(seed=seed), retain_eval.eval_log, full_summary, retain_ratios)
             for seed in range(args.seeds)]
    results = pd.DataFrame(map_in_processes(seed_claims, calls, args.jobs))
    runs = results[["forget_quality", "model_utility"]]
    results = results.drop(columns=runs.columns)
    print(results.T.to_string())
    print("NPO forget quality by seed:", " ".join(f"{v:.2g}" for v in runs["forget_quality"]))
    print("NPO model utility by seed:", " ".join(f"{v:.3f}" for v in runs["model_utility"]))
    # Notebook 02's claims do not depend on the unlearning seed: one evaluation decides them.
    metrics = {name: {**recompute_metrics(evaluation.eval_log), **evaluation.summary}
               for name, evaluation in (("full", full_eval), ("retain", retain_eval))}
    rates = {claim.name: float(claim.holds)
             for claim in claims.reference_claims(metrics["full"], metrics["retain"])}
    rates.update({name: round(float(results[name].mean()), 3) for name in results.columns})
    width = len(notebook_defaults("05_forget_quality_and_utility.ipynb")["SPREAD_SEEDS"]
                or profile.spread_seeds)
    rates["utility_steadier"] = round(spread_hold_rate(runs, width), 3)
    print(json.dumps({"claims": rates, "min_hold_rate": min(rates.values()),
                      "seeds": args.seeds,
                      "npo_forget_quality_median": float(runs["forget_quality"].median()),
                      "npo_forget_quality_at_least_0.05": float(
                          (runs["forget_quality"] >= claims.SIGNIFICANCE).mean()),
                      "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
