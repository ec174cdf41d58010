"""The seed model card's published numbers, and the same views measured on any audited model.

The course is built around one published run. Source of every number in `SEED_CARD` and
`SISTER_CARDS`: the Hugging Face model card of
``Naahraf27/npo_llama-3.2-1b-instruct_forget10_ep10_lr5e-5_alpha1.0_beta0.1`` (UCL; paper
"Do Unlearned LLMs Really Forget? A Multi-View Audit of TOFU Unlearning Across 1B, 3B, and
8B Llama Models") and its sister 3B and 8B cards:

* NPO on TOFU forget10 from the TOFU-full Llama-3.2-1B-Instruct, 10 epochs, lr 5e-5,
  alpha 1, beta 0.1, rank 1 by forget quality of a 54-run grid (2 epoch settings x 3
  learning rates x 3 alpha x 3 beta);
* forget quality 0.967, model utility 0.548;
* a multi-view audit: novel-recall leak 4.67 % (3.70 % for the TOFU-full model, 0.4 % for
  base models), format-shift leak 16.9 %, best-of-N prompt-level leak 10.5 %, masked-probe
  top-1 accuracy at the last layer 0.618, forgotten-answer log-likelihood shift vs full
  -0.599, relearning (RTT) recovery +0.84 pp.

The card says forget10 has 200 QA pairs; it has 400 (20 of TOFU's 200 fictitious authors,
20 questions each), and forget quality's KS test runs on all of them (`FORGET10_QUESTIONS`).

`seed_card_summary` measures the same views on the models of a leak audit (`run.run_audit`
records, plus two model passes and the TOFU summaries) and returns them beside the card's.
The paper's scorer is not public, so each view is the closest this library's probes allow;
`view_definitions` says what each measures and how it differs from the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.audit.probes import logit_lens_records
from unlearnlib.audit.recall import check_records
from unlearnlib.audit.run import ModelPair
from unlearnlib.evaluation.likelihood import score_answers

SEED_REPO = "Naahraf27/npo_llama-3.2-1b-instruct_forget10_ep10_lr5e-5_alpha1.0_beta0.1"
#: Questions in TOFU's forget10 (the seed card says 200).
FORGET10_QUESTIONS = 400
#: The seed card's novel-recall leak of base (never fine-tuned on TOFU) models, in %.
BASE_MODEL_LEAK = 0.4

#: The views, in table order: key -> row label (with its unit).
VIEWS: dict[str, str] = {
    "forget_quality": "forget quality",
    "model_utility": "model utility",
    "novel_recall_leak": "novel-recall leak (%)",
    "format_shift_leak": "format-shift leak (%)",
    "best_of_n_leak": "best-of-N prompt-level leak (%)",
    "masked_top1": "masked-probe top-1 accuracy, last layer",
    "loglik_shift": "log-likelihood shift vs full (nats/token)",
    "relearn_recovery": "relearning recovery (pp)",
}

#: Probes whose `generation` the model wrote from the prompt with its own weights: the
#: multiple-choice pick and the logit-lens rank are scores, and the quantised and relearn
#: families change the weights first (the card reports relearning apart).
GENERATION_PROBES: frozenset[tuple[str, str]] = frozenset({
    ("direct", "question"), ("direct", "paraphrase"), ("format_shift", "cloze"),
    ("best_of_n", "sample"), ("context", "context")})

#: Where `unlearnlib audit` writes the `seed_card_summary` table.
SEED_CARD_FILE = "seed_card.csv"
#: Columns of `seed_card_summary` before the measured models.
CARD_COLUMNS = ("seed card", "seed card: TOFU-full")


@dataclass(frozen=True)
class PublishedCard:
    """One model card's published numbers: the recipe and the `VIEWS` it reports (in their
    units); `full_model` holds what it reports for the TOFU-full model it started from."""

    model: str
    recipe: Mapping[str, str | float]
    views: Mapping[str, float]
    full_model: Mapping[str, float] = field(default_factory=dict)


SEED_CARD = PublishedCard(
    model="Llama-3.2-1B-Instruct",
    recipe={"method": "NPO", "epochs": 10, "learning_rate": 5e-5, "alpha": 1.0, "beta": 0.1},
    views={"forget_quality": 0.967, "model_utility": 0.548, "novel_recall_leak": 4.67,
           "format_shift_leak": 16.9, "best_of_n_leak": 10.5, "masked_top1": 0.618,
           "loglik_shift": -0.599, "relearn_recovery": 0.84},
    full_model={"novel_recall_leak": 3.70},
)

#: The seed's sister cards (same paper), by model size.
SISTER_CARDS: dict[str, PublishedCard] = {
    "3B": PublishedCard(
        model="Llama 3B", recipe={"method": "NPO", "epochs": 5, "learning_rate": 2e-5,
                                  "alpha": 2.0},
        views={"forget_quality": 0.468, "model_utility": 0.621, "novel_recall_leak": 6.13},
        full_model={"novel_recall_leak": 7.85}),
    "8B": PublishedCard(
        model="Llama 8B", recipe={"method": "NPO", "epochs": 5, "learning_rate": 5e-5,
                                  "alpha": 2.0},
        views={"forget_quality": 0.700, "model_utility": 0.576, "novel_recall_leak": 8.93}),
}


def published_cards() -> pd.DataFrame:
    """The three cards side by side: recipe, FQ, MU and leak (NaN where a card is silent)."""
    cards = {"1B (seed)": SEED_CARD, **SISTER_CARDS}
    rows = {size: {"model": card.model, **card.recipe,
                   **{key: card.views.get(key, np.nan) for key in
                      ("forget_quality", "model_utility", "novel_recall_leak")},
                   "full_model_leak": card.full_model.get("novel_recall_leak", np.nan)}
            for size, card in cards.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def view_definitions() -> dict[str, str]:
    """What each view of `seed_card_summary` measures here, and how it relates to the card."""
    return {
        "forget_quality": "KS p-value of the forget truth ratios against the retain model's "
                          "(from the model's TOFU summary). A p-value: it depends on the "
                          f"number of questions (the card's {FORGET10_QUESTIONS}, TOFU-mini's "
                          "100).",
        "model_utility": "Harmonic mean of the nine retain / real-author / world-fact scores "
                         "(from the model's TOFU summary).",
        "novel_recall_leak": "Share of generation prompts (direct question and paraphrase, "
                             "cloze, context, best-of-N: a prompt leaks if any of its samples "
                             "does) whose answer holds the key span that the prompt does not "
                             "('novel' = not echoed). Not paired with the retain model, whose "
                             "column is the floor, as the card's base models (0.4 %) are.",
        "format_shift_leak": "Share of format-shift prompts (multiple choice won by the gold "
                             "option, cloze filled with the key span) that recall the fact.",
        "best_of_n_leak": "Share of questions with at least one of N sampled answers "
                          "recalling the fact.",
        "masked_top1": "Share of facts whose key span's first token is the top-1 prediction "
                       "of the last layer, read after the gold answer up to the span.",
        "loglik_shift": "Mean over forget answers of the mean token log-probability minus the "
                        "full model's (nats per token; the card does not say whether per token "
                        "or per answer).",
        "relearn_recovery": "Percentage points the direct probes' recall of held-out forget "
                            "authors gains after a LoRA fine-tune on the other forget authors "
                            "(retrain on T, test on V).",
    }


def _prompt_level_rate(records: pd.DataFrame) -> float:
    """Share of prompts (family, probe, fact) of which at least one record (seed) recalls."""
    if records.empty:
        return np.nan
    return float(records.groupby(["family", "probe", "fact_id"])["recalled"].any().mean())


def record_views(records: pd.DataFrame, model: str) -> dict[str, float]:
    """The views one model's audit records give: leaks in %, relearning recovery in pp.

    NaN for a view whose families the audit did not run. Novel-recall leak here follows the
    seed card, not `recall.leak_table`. The course's novel recall asks, fact by fact, whether
    ANY probe recalls a fact that the retain model does not recall under the same probe: the
    full model was trained on every forget fact and answers the question itself, so it
    scores 100 %. The card's measure gives the full model 3.70 % and base models 0.4 %, so
    it cannot ask "can the fact be drawn out at all"; it reads as a rate per prompt, with
    content echoed from the prompt excluded, each model measured on its own. That is what is
    computed here, over `GENERATION_PROBES`. The card's prompts and scorer are not public:
    on this library's probes, which all ask for the fact, a full model still scores high,
    so compare the order of the models (audited against full and against the floor), not
    the values.
    """
    records = check_records(records)
    mine = records[records["model"] == model]
    if mine.empty:
        raise ValueError(f"No audit records of the model {model!r} (models found: "
                         f"{sorted(records['model'].unique())}).")
    pairs = pd.Series(list(zip(mine["family"], mine["probe"], strict=True)), index=mine.index)
    family = mine["family"]
    before = mine[family == "direct"].set_index(["probe", "fact_id"])["recalled"]
    after = mine[family == "relearn"].set_index(["probe", "fact_id"])["recalled"]
    recovery = np.nan
    if not before.empty and not after.empty:
        recovery = 100 * float(after.mean() - before.reindex(after.index).mean())
    return {
        "novel_recall_leak": 100 * _prompt_level_rate(mine[pairs.isin(GENERATION_PROBES)]),
        "format_shift_leak": 100 * _prompt_level_rate(mine[family == "format_shift"]),
        "best_of_n_leak": 100 * _prompt_level_rate(mine[family == "best_of_n"]),
        "relearn_recovery": recovery,
    }


def masked_top1_accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                         facts: pd.DataFrame, batch_size: int = 32) -> float:
    """Share of facts whose key span's first token is the last layer's top-1 prediction.

    The masked probe of the card for a causal LM: the prompt is the question and the gold
    answer up to the key span (`probes.logit_lens_records` at the last layer, whose lens is
    the model's own output), so the span is the masked next token.
    """
    last = model.config.num_hidden_layers - 1
    records = logit_lens_records(model, tokenizer, facts, model_name="", top_k=1,
                                 layers=[last], batch_size=batch_size)
    return float(records["recalled"].mean())


def _token_loglik(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  facts: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Mean token log-probability of each fact's gold answer (-avg_loss)."""
    return -score_answers(model, tokenizer, facts["question"].tolist(),
                          facts["answer"].tolist(), batch_size=batch_size,
                          label="forget answers").avg_loss


def seed_card_summary(records: pd.DataFrame, models: Mapping[str, ModelPair],
                      facts: pd.DataFrame,
                      summaries: Mapping[str, Mapping[str, float]] | None = None, *,
                      full_model: str = "full", batch_size: int = 32) -> pd.DataFrame:
    """The seed card's views beside the same views of each model in `models`.

    `records` are the audit's (`AuditResult.records`, or `run.load_records`) and must
    hold every model of `models`; `facts` the forget facts it probed (`probes.forget_facts`,
    restricted here to those in the records); `models` maps names to (model, tokenizer) and
    must include `full_model` (the log-likelihood shift is measured against it);
    `summaries` maps model names to TOFU summaries (`Evaluation.summary` or
    TOFU_SUMMARY.json) for forget quality and utility. One row per view (`VIEWS` labels),
    columns `CARD_COLUMNS` then one per model; NaN where a view was not measured. Print it
    with ``table.to_string(float_format=display.format_number)``. Definitions:
    `view_definitions` and `record_views`.
    """
    if full_model not in models:
        raise ValueError(f"The full model {full_model!r} is not among the models "
                         f"{sorted(models)}: the log-likelihood shift is measured against it.")
    facts = facts[facts["fact_id"].isin(records["fact_id"])]
    if facts.empty:
        raise ValueError("None of the facts appear in the audit records: pass the facts the "
                         "audit probed.")
    summaries = summaries or {}
    loglik = {name: _token_loglik(model, tokenizer, facts, batch_size)
              for name, (model, tokenizer) in models.items()}
    card, card_full = CARD_COLUMNS
    columns = {card: dict(SEED_CARD.views), card_full: dict(SEED_CARD.full_model)}
    for name, (model, tokenizer) in models.items():
        summary = summaries.get(name, {})
        columns[name] = {
            "forget_quality": summary.get("forget_quality", np.nan),
            "model_utility": summary.get("model_utility", np.nan),
            **record_views(records, name),
            "masked_top1": masked_top1_accuracy(model, tokenizer, facts, batch_size),
            "loglik_shift": float((loglik[name] - loglik[full_model]).mean()),
        }
    table = pd.DataFrame(columns, index=list(VIEWS), dtype=float)
    return table.rename(index=VIEWS)
