"""What the course's text says about a run, as code that checks it on the run's own results.

A notebook states a result ("GA loses the most retain probability") only where a function
here checks it, and prints the check in a cell that nbval compares with the golden output.
`benchmarks/claims.py` re-runs the computations behind every claim with ten unlearning seeds
and reports how often each holds: the course keeps a claim only when it holds for nine seeds
in ten or more. Interpretations of run-dependent values (`interpret_forget_quality`) are
printed from the value, never typed into the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

#: Forget quality below this rejects "same distribution as the retain model" at 5 %.
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Claim:
    """One statement about a run and whether this run bears it out."""

    name: str
    text: str
    holds: bool


def print_claims(claims: Sequence[Claim]) -> None:
    """One line a claim: its text and True or False."""
    for claim in claims:
        print(f"{claim.text}: {claim.holds}")


def reference_claims(full: Mapping[str, float], retain: Mapping[str, float]) -> list[Claim]:
    """Notebook 02's claims about the full and retain models' TOFU metrics (one dict each,
    as `eval_logs.recompute_metrics` gives, plus the full model's `forget_quality`)."""
    return [
        Claim("full_more_likely", "full model more likely on forget answers",
              bool(full["forget_Q_A_Prob"] > retain["forget_Q_A_Prob"])),
        Claim("full_recalls_more", "full model recalls more forget answers (ROUGE)",
              bool(full["forget_Q_A_ROUGE"] > retain["forget_Q_A_ROUGE"])),
        Claim("retain_ratio_nearer_one", "retain model's forget truth-ratio score nearer 1",
              bool(retain["forget_truth_ratio"] > full["forget_truth_ratio"])),
        Claim("retain_split_close", "retain probability of full and retain within 0.1",
              bool(abs(full["retain_Q_A_Prob"] - retain["retain_Q_A_Prob"]) < 0.1)),
        Claim("full_rejected", "full model's forget quality below 0.05",
              bool(full["forget_quality"] < SIGNIFICANCE)),
        Claim("utility_close", "model utility of full and retain within 0.1",
              bool(abs(full["model_utility"] - retain["model_utility"]) < 0.1)),
    ]


def method_claims(history: pd.DataFrame) -> list[Claim]:
    """Notebook 04's claims about its training curves (one `method` column, rows in order).

    Claims about a method not in the table are left out.
    """
    start = history.groupby("method", sort=False).first()
    final = history.groupby("method", sort=False).last()
    forget_drop = start["forget_prob"] - final["forget_prob"]
    retain_drop = start["retain_prob"] - final["retain_prob"]
    methods = set(final.index)
    claims = [Claim("forget_prob_falls", "every method lowered the forget probability",
                    bool((forget_drop > 0).all()))]
    if "ga" in methods and len(methods) > 1:
        claims.append(Claim("ga_pays_most", "GA lost the most retain probability",
                            retain_drop.idxmax() == "ga"))
    for method, label in (("graddiff", "GradDiff"), ("npo", "NPO")):
        if {"ga", method} <= methods:
            claims.append(Claim(
                f"{method}_keeps_retain", f"{label} kept more retain probability than GA",
                bool(final.loc[method, "retain_prob"] > final.loc["ga", "retain_prob"])))
    if "simnpo" in methods and len(methods) > 1:
        claims.append(Claim("simnpo_moves_least",
                            "SimNPO lowered the forget probability least",
                            forget_drop.idxmin() == "simnpo"))
    return claims


def unlearning_claims(full: Mapping[str, float], unlearned: Mapping[str, float],
                      name: str = "NPO") -> list[Claim]:
    """Notebook 05's claims about an unlearned model's TOFU summary against the full model's."""
    return [
        Claim("forget_prob_lower", f"{name} lowered the forget probability",
              bool(unlearned["forget_Q_A_Prob"] < full["forget_Q_A_Prob"])),
        Claim("forget_quality_raised",
              f"{name} raised forget quality by more than 1000 times",
              bool(unlearned["forget_quality"] > 1000 * full["forget_quality"])),
        Claim("forget_quality_passes",
              f"{name}'s forget quality at least {SIGNIFICANCE} (KS test cannot tell it "
              "from retain)", bool(unlearned["forget_quality"] >= SIGNIFICANCE)),
        Claim("utility_kept", f"{name} kept model utility within 0.1 of the full model",
              bool(abs(unlearned["model_utility"] - full["model_utility"]) < 0.1)),
    ]


def audit_claims(novel: pd.DataFrame, leak: pd.DataFrame, unlearned: str = "npo"
                 ) -> list[Claim]:
    """Notebook 06's claims from the audit's novel-recall and leak-rate grids (model x family).
    """
    direct = leak["direct"]
    return [
        Claim("retain_no_novel", "retain model's novel-recall leak is 0 everywhere",
              bool((novel.loc["retain"] == 0).all())),
        Claim("full_recalls", "full model recalls >= 90 % of the forget facts directly",
              bool(direct["full"] >= 0.9)),
        Claim("direct_lower", "NPO leaks less than full on direct probes",
              bool(direct[unlearned] < direct["full"])),
        Claim("direct_novel_small", "NPO's novel-recall leak on direct probes at most 5 %",
              bool(novel.loc[unlearned, "direct"] <= 0.05)),
    ]


def spread_claims(spread: pd.DataFrame) -> list[Claim]:
    """Notebook 05's claim about one recipe's runs over seeds (a row per seed)."""
    def ratio(column: str) -> float:
        return float(spread[column].max() / spread[column].min())

    return [Claim("utility_steadier",
                  "model utility varies less than forget quality across seeds (max / min)",
                  ratio("model_utility") < ratio("forget_quality"))]


def describe_spread(forget_quality: pd.Series) -> str:
    """The spread of forget quality over seeds in a sentence, from the values."""
    low, high = forget_quality.min(), forget_quality.max()
    passing = int((forget_quality >= SIGNIFICANCE).sum())
    return (f"Over {len(forget_quality)} seeds forget quality ran from {low:.2g} to {high:.2g} "
            f"(a factor of {high / low:.2g}), median {forget_quality.median():.2g}; "
            f"{passing} of {len(forget_quality)} runs at or above {SIGNIFICANCE}.")


def describe_selection(forget_quality: pd.Series) -> str:
    """What choosing the best of equally good runs reports, against their median."""
    best, median = forget_quality.max(), forget_quality.median()
    return (f"{len(forget_quality)} runs of one recipe: the best forget quality is {best:.2g}, "
            f"the median {median:.2g}; reporting the best overstates a new run's by a "
            f"factor of {best / median:.2g}.")


def interpret_forget_quality(forget_quality: float, name: str = "NPO") -> str:
    """What one forget quality says, in a sentence, from its value."""
    if forget_quality < SIGNIFICANCE:
        return (f"{name}'s forget quality {forget_quality:.2g} is below {SIGNIFICANCE}: the KS "
                "test still tells its truth ratios from the retain model's.")
    return (f"{name}'s forget quality {forget_quality:.2g} is at least {SIGNIFICANCE}: the KS "
            "test cannot tell its truth ratios from the retain model's (which is not proof "
            "that they are the same).")


def interpret_privleak(privleak: float, name: str = "NPO") -> str:
    """What one privleak (MUSE's convention, against the retain model) says, from its sign."""
    if privleak > 0:
        return (f"{name}'s privleak {privleak:+.0f} is positive: its forget answers look less "
                "familiar than the retain model finds them (Min-K% AUC below the retain "
                "model's), the over-unlearning side. Far above 0 this is itself a leak: the "
                "forget set is again easy to tell apart, from the other side.")
    if privleak < 0:
        return (f"{name}'s privleak {privleak:+.0f} is negative: its forget answers still look "
                "more familiar than the retain model finds them (Min-K% AUC above the retain "
                "model's), the under-unlearning side; the full model scores about -100.")
    return (f"{name}'s privleak is 0: its forget answers are as hard to tell from holdout "
            "answers as for the retain model.")
