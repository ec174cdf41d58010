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
(`likelihood.score_perturbed_set`); the membership scores are `mia.membership_scores`. The
log is written in open-unlearning's layout, so `eval_logs.summarize_eval_log` (and
``unlearnlib eval summarize``) recompute its summary exactly. Left out, so absent from the
log and the summary: mia_reference (needs a reference model), mia_gradnorm (needs
gradients) and mia_min_k_plus_plus (needs per-token statistics of the whole vocabulary
distribution, which the likelihood pass does not keep).

The attention mask the run used is stored in the log under `SETTINGS_KEY` (a key
open-unlearning's readers ignore). Forget quality compares truth-ratio distributions, so a
model evaluated with one mask must never be compared with a reference evaluated with the
other: a published log, which carries no such key, counts as
``"open-unlearning"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
from unlearnlib.evaluation.eval_logs import (
    SETTINGS_KEY,
    check_same_forget_split,
    check_same_mask_mode,
)
from unlearnlib.evaluation.generation import gold_text, rouge_records
from unlearnlib.evaluation.likelihood import (
    AnswerScores,
    PerturbedSetScores,
    score_answers,
    score_perturbed_set,
)
from unlearnlib.evaluation.mia import membership_scores
from unlearnlib.profiles import Profile, get_profile

#: Utility sets: prefix in TOFU_EVAL.json -> TOFU config.
_UTILITY_SETS = {"ra": "real_authors_perturbed", "wf": "world_facts_perturbed"}


@dataclass(frozen=True)
class Evaluation:
    """The result of `evaluate_model`: the per-sample log, its summary and where they went."""

    eval_log: dict[str, Any]
    summary: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)

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


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class _Run:
    """What every section of one evaluation shares: the model, the data and the settings."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: TofuSource
    max_samples: int | None
    batch_size: int
    max_new_tokens: int
    mask_mode: MaskMode
    progress: bool

    def load(self, config: str) -> Any:
        """A TOFU config, cut to `max_samples` rows."""
        dataset = load_tofu(config, self.source)
        if not self.max_samples:
            return dataset
        return dataset.select(range(min(self.max_samples, len(dataset))))

    def score_set(self, dataset: Any, label: str) -> PerturbedSetScores:
        """Every answer variant of a ``_perturbed`` set, in one prompt-sharing pass."""
        return score_perturbed_set(self.model, self.tokenizer, dataset, label=label,
                                   batch_size=self.batch_size, mask_mode=self.mask_mode,
                                   progress=self.progress)


def _rouge_entry(run: _Run, dataset: Any) -> dict[str, Any]:
    """The ``*_Q_A_ROUGE`` entry: greedy answers to the set's questions and their ROUGE."""
    return _entry(rouge_records(
        run.model, run.tokenizer, list(dataset["question"]), list(dataset["answer"]),
        max_new_tokens=run.max_new_tokens, batch_size=run.batch_size, progress=run.progress,
        mask_mode=run.mask_mode))


def _forget_gold(run: _Run, forget: Any) -> dict[str, str]:
    """The forget split's gold answers by sample index, as a log's ``ground_truth``."""
    return {str(index): gold_text(run.tokenizer, row["question"], row["answer"])
            for index, row in enumerate(forget)}


def _holdout_scores(run: _Run, forget_split: str) -> AnswerScores:
    """Likelihood of the holdout answers, the non-members of the membership attacks."""
    config = HOLDOUT_OF_FORGET[forget_split]
    holdout = run.load(config)
    return score_answers(run.model, run.tokenizer, list(holdout["question"]),
                         list(holdout["answer"]), label=config,
                         sample_ids=list(range(len(holdout))), batch_size=run.batch_size,
                         mask_mode=run.mask_mode, progress=run.progress)


def _forget_entries(run: _Run, forget_split: str, reference: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """Probabilities, ROUGE, truth ratio, ES / EM and membership scores on the forget split.

    With a reference, its forget questions are checked before any model pass.
    """
    config = f"{forget_split}_perturbed"
    forget = run.load(config)
    if reference is not None:
        check_same_forget_split(_forget_gold(run, forget), reference, config)
    scores = run.score_set(forget, config)
    holdout = _holdout_scores(run, forget_split)
    return {
        **_qa_entries(run, forget, scores, "forget", "forget_truth_ratio"),
        **_memorisation_entries(scores.answer),
        **_mia_entries(scores.answer, holdout, run.tokenizer),
    }


def _retain_entries(run: _Run) -> dict[str, Any]:
    """The retain split's model-utility entries: probabilities, ROUGE and truth ratio."""
    retain = run.load("retain_perturbed")
    scores = run.score_set(retain, "retain_perturbed")
    return _qa_entries(run, retain, scores, "retain", "retain_Truth_Ratio")


def _qa_entries(run: _Run, rows: Any, scores: PerturbedSetScores, prefix: str,
                truth_ratio_key: str) -> dict[str, Any]:
    """A forget or retain set's probabilities (answer, paraphrase, perturbed answers), ROUGE
    and truth ratio, under open-unlearning's key names."""
    return {
        f"{prefix}_Q_A_Prob": _prob_entry(scores.answer),
        f"{prefix}_Q_A_PARA_Prob": _prob_entry(scores.correct),
        f"{prefix}_Q_A_PERT_Prob": _pert_entry(scores),
        f"{prefix}_Q_A_ROUGE": _rouge_entry(run, rows),
        truth_ratio_key: _score_entry(scores.truth_ratio()),
    }


def _utility_entries(run: _Run, prefix: str, config: str) -> dict[str, Any]:
    """A real-authors or world-facts set's entries (`_UTILITY_SETS`); its P_c is the answer's."""
    dataset = run.load(config)
    scores = run.score_set(dataset, config)
    normalised = tm.normalised_probability(
        scores.answer.prob, scores.perturbed.prob.reshape(-1, scores.num_perturbed))
    return {
        f"{prefix}_Q_A_Prob": _prob_entry(scores.answer),
        f"{prefix}_Q_A_PERT_Prob": _pert_entry(scores),
        f"{prefix}_Q_A_Prob_normalised": _entry([{"prob": float(p)} for p in normalised]),
        f"{prefix}_Q_A_ROUGE": _rouge_entry(run, dataset),
        f"{prefix}_Truth_Ratio": _score_entry(scores.truth_ratio()),
    }


def _finalise(log: dict[str, Any], reference: dict[str, Any] | None,
              out_dir: str | Path | None) -> Evaluation:
    """Fill in every entry's agg_value and the headline numbers, sort, and write the log."""
    metrics = eval_logs.recompute_metrics(log)
    for key, entry in log.items():
        if key in metrics and isinstance(entry, dict) and "value_by_index" in entry:
            entry["agg_value"] = metrics[key]
    summary = eval_logs.summarize_eval_log(log, reference)
    log["model_utility"] = {"agg_value": summary.get("model_utility")}
    log["privleak"] = {"agg_value": summary.get("privleak")}
    log["forget_quality"] = {"agg_value": summary.get("forget_quality")}
    log = dict(sorted(log.items()))  # open-unlearning writes its entries sorted by name
    paths = {}
    if out_dir is not None:
        paths["eval_log"], paths["summary"] = eval_logs.write_eval_log(out_dir, log, summary)
    return Evaluation(eval_log=log, summary=summary, paths=paths)


# --------------------------------------------------------------------------- the run


def _load_reference(reference: str | Path | Mapping[str, Any] | None
                    ) -> dict[str, Any] | None:
    if reference is None or isinstance(reference, Mapping):
        return None if reference is None else dict(reference)
    return eval_logs.load_eval_log(reference)


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
    max_samples = max_samples if max_samples is not None else settings.eval_max_samples
    run = _Run(model, tokenizer, src, max_samples, batch_size or settings.eval_batch_size,
               max_new_tokens or settings.max_new_tokens, mask_mode, progress)
    render_chat(tokenizer, "")  # a tokenizer without a chat template fails here, clearly
    ref_log = _load_reference(reference)
    log: dict[str, Any] = {SETTINGS_KEY: {
        "mask_mode": mask_mode, "forget_split": forget_split, "source": src.describe(),
        "max_new_tokens": run.max_new_tokens, "max_samples": max_samples,
    }}
    if ref_log is not None:
        check_same_mask_mode(log, ref_log)
    log.update(_forget_entries(run, forget_split, ref_log))
    log.update(_retain_entries(run))
    for prefix, config in _UTILITY_SETS.items():
        log.update(_utility_entries(run, prefix, config))
    return _finalise(log, ref_log, out_dir)
