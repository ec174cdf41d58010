"""One TOFU evaluation of a model: every per-sample number, the log, and the summary.

`evaluate_model` runs the model over the TOFU suite exactly as open-unlearning's TOFU
evaluator does, split by split and column by column:

==============================  ================================  =========================
entry (TOFU_EVAL.json)          split                             column(s), given question
==============================  ================================  =========================
forget_Q_A_Prob / _ROUGE        ``{forget}_perturbed``            answer
forget_Q_A_PARA_Prob            ``{forget}_perturbed``            paraphrased_answer
forget_Q_A_PERT_Prob            ``{forget}_perturbed``            perturbed_answer (5)
forget_truth_ratio              from PARA (P_c) and PERT (P_w)
extraction_strength, exact_m.   ``{forget}_perturbed``            answer (teacher-forced)
mia_min_k / mia_loss / mia_zlib ``{forget}_perturbed`` vs ``holdoutNN``  answer
retain_Q_A_* / Truth_Ratio      ``retain_perturbed``              as forget
ra_* / wf_*                     ``real_authors_perturbed`` /      answer, perturbed_answer
                                ``world_facts_perturbed``         (3); P_c from answer
==============================  ================================  =========================

The seven answers of a perturbed question share one prompt computation
(`likelihood.score_perturbed_set`). The log is written in open-unlearning's layout, so
`eval_logs.summarize_eval_log` (and ``unlearnlib eval summarize``) recompute its summary
exactly. Left out, so absent from the log and the summary: mia_reference (needs a
reference model), mia_gradnorm (needs gradients) and mia_min_k_plus_plus (needs per-token
statistics of the whole vocabulary distribution, which the likelihood pass does not keep).

The attention mask the run used is stored in the log under `SETTINGS_KEY` (a key
open-unlearning's readers ignore). Forget quality compares truth-ratio distributions, so a
model evaluated with one mask must never be compared with a reference evaluated with the
other: a published log, which carries no such key, counts as
``"open-unlearning"``.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.checks import check_at_least_one
from unlearnlib.data.formatting import MaskMode, render_chat
from unlearnlib.data.tofu import (
    HOLDOUT_OF_FORGET,
    TofuSource,
    check_forget_split,
    load_tofu,
    resolve_source,
)
from unlearnlib.evaluation import eval_logs
from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.evaluation.eval_logs import SETTINGS_KEY, check_same_mask_mode
from unlearnlib.evaluation.generation import decode_text, gold_text, rouge_records
from unlearnlib.evaluation.likelihood import (
    AnswerScores,
    PerturbedSetScores,
    score_answers,
    score_perturbed_set,
)
from unlearnlib.profiles import Profile, get_profile

__all__ = [
    "Evaluation",
    "evaluate_model",
    "membership_scores",
    "summary_frame",
]

#: Utility sets: prefix in TOFU_EVAL.json -> TOFU config.
_UTILITY_SETS = {"ra": "real_authors_perturbed", "wf": "world_facts_perturbed"}


@dataclass(frozen=True)
class Evaluation:
    """The result of `evaluate_model`: the per-sample log, its summary and where they went."""

    eval_log: dict[str, Any]
    summary: dict[str, float]
    paths: tuple[Path, Path] | None = None

    def frame(self) -> pd.DataFrame:
        """The summary as a tidy DataFrame (`summary_frame`)."""
        return summary_frame(self.summary)


def summary_frame(summary: Mapping[str, float]) -> pd.DataFrame:
    """A summary dict as a DataFrame with one row per metric (columns: metric, value)."""
    return pd.DataFrame({"metric": list(summary), "value": [float(v) for v in summary.values()]})


# --------------------------------------------------------------------------- log entries


def _entry(value_by_index: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"value_by_index": {"0": ..., "1": ...}}``; agg_value is filled in afterwards."""
    return {"value_by_index": {str(i): dict(v) for i, v in enumerate(value_by_index)}}


def _prob_entry(scores: AnswerScores) -> dict[str, Any]:
    return _entry([{"prob": float(p), "avg_loss": float(loss)}
                   for p, loss in zip(scores.prob, scores.avg_loss, strict=True)])


def _pert_entry(scores: PerturbedSetScores) -> dict[str, Any]:
    losses = scores.perturbed_avg_loss
    return _entry([{"prob": [float(x) for x in tm.probability_from_loss(row)],
                    "avg_loss": [float(x) for x in row]} for row in losses])


def _score_entry(values: Sequence[float | None]) -> dict[str, Any]:
    return _entry([{"score": None if v is None else float(v)} for v in values])


def membership_scores(scores: AnswerScores, tokenizer: PreTrainedTokenizerBase
                      ) -> dict[str, list[float]]:
    """Per-sample membership-inference scores (higher = less likely a training member).

    * ``mia_min_k``: Min-K% (k = 0.4), ``-mean`` of the 40 % lowest token log-probs of the
      answer, its final end-of-turn token excluded (as open-unlearning);
    * ``mia_loss``: the average loss ``-(1/|y|) sum_t log p(y_t | x, y_<t)``;
    * ``mia_zlib``: ``avg_loss / len(zlib.compress(answer text))`` (Carlini et al. 2021),
      the text decoded from the label tokens as the tokenizer decodes by default.
    """
    min_k = [tm.min_k_score(lp[:-1]) for lp in scores.token_logprobs]
    clean_up = bool(getattr(tokenizer, "clean_up_tokenization_spaces", False))
    texts = [decode_text(tokenizer, ids.tolist(), clean_up) for ids in scores.label_ids]
    zlib_scores = [float(loss) / len(zlib.compress(text.encode("utf-8")))
                   for loss, text in zip(scores.avg_loss, texts, strict=True)]
    return {"mia_min_k": min_k, "mia_loss": [float(x) for x in scores.avg_loss],
            "mia_zlib": zlib_scores}


def _mia_entries(forget: AnswerScores, holdout: AnswerScores,
                 tokenizer: PreTrainedTokenizerBase) -> dict[str, dict[str, Any]]:
    forget_scores = membership_scores(forget, tokenizer)
    holdout_scores = membership_scores(holdout, tokenizer)
    entries = {}
    for key in forget_scores:
        sides = {"forget": _score_entry(forget_scores[key]),
                 "holdout": _score_entry(holdout_scores[key])}
        for side, values in (("forget", forget_scores[key]), ("holdout", holdout_scores[key])):
            sides[side]["agg_value"] = float(np.mean(values))
        auc = tm.auc_forget_vs_holdout(forget_scores[key], holdout_scores[key])
        entries[key] = {**sides, "auc": auc, "agg_value": auc}
    return entries


def _memorisation_entries(scores: AnswerScores) -> dict[str, dict[str, Any]]:
    """ES and EM from the teacher-forced argmax, the final end-of-turn label dropped."""
    pairs = list(zip(scores.argmax_ids, scores.label_ids, strict=True))
    return {
        "extraction_strength": _score_entry([tm.extraction_strength(p[:-1], y[:-1])
                                             for p, y in pairs]),
        "exact_memorization": _score_entry([tm.exact_memorization(p[:-1], y[:-1])
                                            for p, y in pairs]),
    }


# --------------------------------------------------------------------------- mask modes


def _check_reference_questions(reference: Mapping[str, Any], forget: Any, config: str,
                               tokenizer: PreTrainedTokenizerBase) -> None:
    """Fail before any model pass when the reference scored other forget questions."""
    count = len(eval_logs.forget_truth_ratios(reference))
    if count != len(forget):
        raise ValueError(
            f"the reference log scored {count} forget questions but {config} has {len(forget)}: "
            "it was evaluated on another forget split (e.g. retain90 goes with forget10) or "
            "with another max_samples"
        )
    entry = reference.get("forget_Q_A_ROUGE")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("value_by_index"), Mapping):
        return
    for index, row in enumerate(forget):
        logged = entry["value_by_index"].get(str(index)) or {}
        gold = gold_text(tokenizer, row["question"], row["answer"])
        if logged.get("ground_truth") not in (None, gold):
            raise ValueError(
                f"forget question {index} of {config} does not match the reference log: its "
                f"gold answer is {gold!r} but the reference scored {logged['ground_truth']!r}. "
                "Pass the retain model's log for the same forget split and data source."
            )


# --------------------------------------------------------------------------- the run


def _load_reference(reference: str | Path | Mapping[str, Any] | None
                    ) -> dict[str, Any] | None:
    if reference is None or isinstance(reference, Mapping):
        return None if reference is None else dict(reference)
    return eval_logs.load_eval_log(reference)


def _load(config: str, source: TofuSource, max_samples: int | None) -> Any:
    dataset = load_tofu(config, source)
    return dataset.select(range(min(max_samples, len(dataset)))) if max_samples else dataset


def evaluation_inputs(profile: Profile | str = "tiny", forget_split: str | None = None,
                      source: str | Path | TofuSource | None = None,
                      max_samples: int | None = None) -> tuple[Profile, str, TofuSource]:
    """Check `evaluate_model`'s inputs without a model: the profile, the forget split (the
    profile's by default), `max_samples` and the data source, so a command can refuse bad
    input before it loads a model. Returns the profile, the forget split and the source."""
    settings = get_profile(profile)
    forget_split = check_forget_split(forget_split or settings.forget_split)
    if max_samples is not None:
        check_at_least_one(max_samples, "max_samples")
    return (settings, forget_split,
            resolve_source(source if source is not None else settings.data_source))


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    profile: Profile | str = "tiny",
    *,
    forget_split: str | None = None,
    source: str | Path | TofuSource | None = None,
    reference: str | Path | Mapping[str, Any] | None = None,
    out_dir: str | Path | None = None,
    mask_mode: MaskMode = "lengths",
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    max_samples: int | None = None,
    progress: bool = True,
) -> Evaluation:
    """Evaluate a model on the TOFU suite; optionally write TOFU_EVAL.json / TOFU_SUMMARY.json.

    ``profile`` supplies the defaults: forget split, data source, ``eval_batch_size`` and
    ``max_new_tokens`` (each can be overridden). ``reference`` is the retain model's
    TOFU_EVAL.json (path or dict) on the same forget split: it gives forget quality
    (``KS_2samp(TR_model, TR_retain).pvalue``) and privleak's reference AUC; without it
    forget quality is left out and privleak uses AUC_retain = 0.5. ``mask_mode`` (likelihoods
    and generations alike) must match the reference's (ValueError otherwise): "lengths", the
    default, measures a model by TOFU's own definition; "open-unlearning" reproduces how the
    published logs were computed, to compare with them. ``max_samples`` keeps the first rows
    of every split, for a quick look.

    Returns an `Evaluation` (log, summary; ``.frame()`` for a DataFrame).
    """
    settings, forget_split, src = evaluation_inputs(profile, forget_split, source, max_samples)
    batch_size = batch_size or settings.eval_batch_size
    max_new_tokens = max_new_tokens or settings.max_new_tokens
    render_chat(tokenizer, "")  # a tokenizer without a chat template fails here, clearly
    ref_log = _load_reference(reference)
    log: dict[str, Any] = {SETTINGS_KEY: {
        "mask_mode": mask_mode, "forget_split": forget_split, "source": src.describe(),
        "max_new_tokens": max_new_tokens, "max_samples": max_samples,
    }}
    if ref_log is not None:
        check_same_mask_mode(log, ref_log)
    common = {"batch_size": batch_size, "mask_mode": mask_mode, "progress": progress}

    forget_config = f"{forget_split}_perturbed"
    forget = _load(forget_config, src, max_samples)
    if ref_log is not None:
        _check_reference_questions(ref_log, forget, forget_config, tokenizer)
    forget_scores = score_perturbed_set(model, tokenizer, forget, label=forget_config, **common)
    holdout_config = HOLDOUT_OF_FORGET[forget_split]
    holdout = _load(holdout_config, src, max_samples)
    holdout_scores = score_answers(model, tokenizer, list(holdout["question"]),
                                   list(holdout["answer"]), label=holdout_config,
                                   sample_ids=list(range(len(holdout))), **common)
    retain = _load("retain_perturbed", src, max_samples)
    retain_scores = score_perturbed_set(model, tokenizer, retain, label="retain_perturbed",
                                        **common)

    def rouge(dataset: Any) -> dict[str, Any]:
        return _entry(rouge_records(
            model, tokenizer, list(dataset["question"]), list(dataset["answer"]),
            max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
            mask_mode=mask_mode))

    log.update({
        "forget_Q_A_Prob": _prob_entry(forget_scores.answer),
        "forget_Q_A_PARA_Prob": _prob_entry(forget_scores.correct),
        "forget_Q_A_PERT_Prob": _pert_entry(forget_scores),
        "forget_Q_A_ROUGE": rouge(forget),
        "forget_truth_ratio": _score_entry(forget_scores.truth_ratio()),
        **_memorisation_entries(forget_scores.answer),
        **_mia_entries(forget_scores.answer, holdout_scores, tokenizer),
        "retain_Q_A_Prob": _prob_entry(retain_scores.answer),
        "retain_Q_A_PARA_Prob": _prob_entry(retain_scores.correct),
        "retain_Q_A_PERT_Prob": _pert_entry(retain_scores),
        "retain_Q_A_ROUGE": rouge(retain),
        "retain_Truth_Ratio": _score_entry(retain_scores.truth_ratio()),
    })
    for prefix, config in _UTILITY_SETS.items():
        dataset = _load(config, src, max_samples)
        scores = score_perturbed_set(model, tokenizer, dataset, label=config, **common)
        log.update({
            f"{prefix}_Q_A_Prob": _prob_entry(scores.answer),
            f"{prefix}_Q_A_PERT_Prob": _pert_entry(scores),
            f"{prefix}_Q_A_Prob_normalised": _entry(
                [{"prob": float(p)} for p in tm.normalised_probability(
                    scores.answer.prob, scores.perturbed.prob.reshape(-1, scores.num_perturbed))]),
            f"{prefix}_Q_A_ROUGE": rouge(dataset),
            f"{prefix}_Truth_Ratio": _score_entry(scores.truth_ratio()),
        })

    metrics = eval_logs.recompute_metrics(log)
    for key, entry in log.items():
        if key in metrics and isinstance(entry, dict) and "value_by_index" in entry:
            entry["agg_value"] = metrics[key]
    summary = eval_logs.summarize_eval_log(log, ref_log)
    log["model_utility"] = {"agg_value": summary.get("model_utility")}
    log["privleak"] = {"agg_value": summary.get("privleak")}
    log["forget_quality"] = {"agg_value": summary.get("forget_quality")}
    log = dict(sorted(log.items()))  # open-unlearning writes its entries sorted by name
    paths = eval_logs.write_eval_log(out_dir, log, summary) if out_dir is not None else None
    return Evaluation(eval_log=log, summary=summary, paths=paths)
