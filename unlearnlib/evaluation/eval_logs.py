"""Evaluation logs in open-unlearning's layout: read, write, and recompute the summary.

open-unlearning writes two files per evaluation (the Hub's ``open-unlearning/eval`` layout):

* ``TOFU_EVAL.json``: one entry per metric, ``{"agg_value": float, "value_by_index":
  {"0": {...}, "1": {...}}}`` with the per-sample numbers (``prob`` / ``avg_loss`` for
  probabilities, lists of them for perturbed answers, ``score`` for truth ratios, ES and
  EM, ROUGE scores with ``input`` / ``ground_truth`` / ``generation``); membership-inference
  entries ``mia_*`` hold ``forget`` and ``holdout`` sub-entries plus ``auc``.
* ``TOFU_SUMMARY.json``: the headline numbers (`SUMMARY_KEYS`), sorted by name.

`summarize_eval_log` recomputes the summary from the per-sample values alone (never from a
logged ``agg_value``) with `unlearnlib.evaluation.tofu_metrics`, so a log written by this course and
one downloaded from the Hub are summarised by the same code, and the published summaries
can be reproduced bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unlearnlib.evaluation import tofu_metrics as tm

EVAL_FILENAME = "TOFU_EVAL.json"
#: The Hub dataset where open-unlearning publishes its evaluation logs.
PUBLISHED_LOGS_REPO = "open-unlearning/eval"
SUMMARY_FILENAME = "TOFU_SUMMARY.json"

#: The headline metrics of open-unlearning's TOFU evaluation, as TOFU_SUMMARY.json names
#: them (its current TOFU configuration). A summary holds those a log allows:
#: ``mia_reference`` needs a reference model's scores, ``forget_quality`` a retain model's log.
SUMMARY_KEYS: tuple[str, ...] = (
    "exact_memorization",
    "extraction_strength",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "forget_quality",
    "forget_truth_ratio",
    "mia_gradnorm",
    "mia_loss",
    "mia_min_k",
    "mia_min_k_plus_plus",
    "mia_reference",
    "mia_zlib",
    "model_utility",
    "privleak",
)

#: The summary keys of the published logs (a log without `SETTINGS_KEY`): their TOFU
#: configuration computed ``forget_truth_ratio`` only on the way to forget quality, not as a
#: headline.
PUBLISHED_SUMMARY_KEYS: tuple[str, ...] = tuple(k for k in SUMMARY_KEYS
                                                if k != "forget_truth_ratio")

#: The opt-in summary key of the forget set's "extent of knowledge",
#: `tofu_metrics.truth_ratio_prob_mean_score` (open-unlearning's ``prob_mean`` aggregator).
PROB_MEAN_KEY = "forget_truth_ratio_prob_mean"

#: Truth-ratio entries: name -> (correct-answer entry, perturbed-answers entry, aggregator).
_TRUTH_RATIOS: dict[str, tuple[str, str, Callable[[Any], float]]] = {
    "forget_truth_ratio": (
        "forget_Q_A_PARA_Prob",
        "forget_Q_A_PERT_Prob",
        tm.truth_ratio_forget_score,
    ),
    "retain_Truth_Ratio": (
        "retain_Q_A_PARA_Prob",
        "retain_Q_A_PERT_Prob",
        tm.truth_ratio_utility_score,
    ),
    "ra_Truth_Ratio": ("ra_Q_A_Prob", "ra_Q_A_PERT_Prob", tm.truth_ratio_utility_score),
    "wf_Truth_Ratio": ("wf_Q_A_Prob", "wf_Q_A_PERT_Prob", tm.truth_ratio_utility_score),
}


# --------------------------------------------------------------------------- reading, writing


#: Top-level key of TOFU_EVAL.json holding how this course ran the evaluation.
SETTINGS_KEY = "unlearnlib_settings"


def load_eval_log(path: str | Path) -> dict[str, Any]:
    """Read a ``TOFU_EVAL.json`` (or the folder holding one) into a dict.

    Raises FileNotFoundError naming the file when it is missing, and ValueError naming it
    when it is not JSON, not a JSON object, or is a summary rather than a per-sample log.
    """
    file = Path(path).expanduser()
    if file.is_dir():
        file = file / EVAL_FILENAME
    if not file.is_file():
        raise FileNotFoundError(f"evaluation log not found: {file}")
    try:
        log = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{file} is not valid JSON ({err})") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{file} is not UTF-8 text ({err})") from err
    if not isinstance(log, dict):
        raise ValueError(f"{file} holds a JSON {type(log).__name__}, not an evaluation log")
    if log and not any(isinstance(entry, dict) for entry in log.values()):
        raise ValueError(
            f"{file} holds only summary numbers (a {SUMMARY_FILENAME}?); pass the per-sample "
            f"{EVAL_FILENAME} instead"
        )
    return log


def published_eval_log(model: str | Path, forget_split: str, source: str | Path = "hub"
                       ) -> dict[str, Any]:
    """open-unlearning's published TOFU_EVAL.json of `model` on `forget_split`.

    `model` is the published model's Hub id or name (e.g. the retain model
    ``open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90``); `source` is "hub" (the dataset
    repository `PUBLISHED_LOGS_REPO`, downloaded once into the Hub cache) or a local folder
    in its layout: ``<name>/evals_<forget_split>/TOFU_EVAL.json`` for a model evaluated on
    several splits, ``<name>/TOFU_EVAL.json`` for a retain model (only on its own split;
    `evaluate_model` checks the questions against the split it scores).
    """
    name = Path(str(model)).name
    candidates = [f"{name}/evals_{forget_split}/{EVAL_FILENAME}", f"{name}/{EVAL_FILENAME}"]
    if str(source) != "hub":
        folder = Path(source).expanduser()
        found = [folder / c for c in candidates if (folder / c).is_file()]
        return load_eval_log(found[0] if found else folder / candidates[0])
    from huggingface_hub import hf_hub_download

    from unlearnlib.models.loading import hf_token

    for candidate in candidates:
        try:
            path = hf_hub_download(PUBLISHED_LOGS_REPO, candidate, repo_type="dataset",
                                   token=hf_token())
        except Exception:  # offline, or not this layout: try the next, then say what failed
            continue
        return load_eval_log(path)
    raise OSError(f"Could not fetch {' or '.join(candidates)} from the Hub dataset "
                  f"{PUBLISHED_LOGS_REPO}; pass a local copy of its folder instead.")


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} to an evaluation log")


def write_eval_log(
    out_dir: str | Path,
    eval_log: Mapping[str, Any],
    summary: Mapping[str, float] | None = None,
) -> tuple[Path, Path]:
    """Write ``TOFU_EVAL.json`` and ``TOFU_SUMMARY.json`` into ``out_dir`` (created).

    Indented by 4 as open-unlearning writes them; numpy numbers become plain JSON numbers.
    Without ``summary`` it is recomputed with `summarize_eval_log` (no forget quality then,
    since that needs a retain model's log). Returns the two paths.
    """
    folder = Path(out_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if summary is None:
        summary = summarize_eval_log(dict(eval_log))
    eval_path = folder / EVAL_FILENAME
    summary_path = folder / SUMMARY_FILENAME
    eval_path.write_text(json.dumps(eval_log, indent=4, default=_to_json), encoding="utf-8")
    summary_path.write_text(
        json.dumps(dict(sorted(summary.items())), indent=4, default=_to_json), encoding="utf-8"
    )
    return eval_path, summary_path


# --------------------------------------------------------------------------- per-sample access


def _samples(eval_log: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``value_by_index`` of one entry, with a clear error when it is absent."""
    entry = eval_log.get(key)
    if not isinstance(entry, Mapping) or not isinstance(entry.get("value_by_index"), Mapping):
        raise KeyError(f"the evaluation log has no per-sample values for {key!r}")
    return dict(entry["value_by_index"])


def _field(eval_log: Mapping[str, Any], key: str, field: str) -> list[Any]:
    """One field of every sample, skipping samples logged as None (as open-unlearning)."""
    values = []
    for sample in _samples(eval_log, key).values():
        if sample is not None and sample.get(field) is not None:
            values.append(sample[field])
    return values


def _has_samples(eval_log: Mapping[str, Any], *keys: str) -> bool:
    return all(
        isinstance(eval_log.get(key), Mapping) and "value_by_index" in eval_log[key] for key in keys
    )


def _paired_losses(
    eval_log: Mapping[str, Any], correct_key: str, wrong_key: str
) -> tuple[list[str], list[Any], list[Any]]:
    """Sample indices with both answers' average losses logged, and those losses."""
    correct = _samples(eval_log, correct_key)
    wrong = _samples(eval_log, wrong_key)
    if list(correct) != list(wrong):
        raise ValueError(f"{correct_key} and {wrong_key} cover different sample indices")
    indices = [
        idx
        for idx in correct
        if correct[idx] is not None
        and wrong[idx] is not None
        and correct[idx].get("avg_loss") is not None
        and wrong[idx].get("avg_loss") is not None
    ]
    return (indices, [correct[idx]["avg_loss"] for idx in indices],
            [wrong[idx]["avg_loss"] for idx in indices])


def _truth_ratios_by_index(
    eval_log: Mapping[str, Any], correct_key: str, wrong_key: str
) -> dict[str, float]:
    indices, correct, wrong = _paired_losses(eval_log, correct_key, wrong_key)
    ratios = tm.truth_ratio(correct, wrong)
    return {idx: float(ratio) for idx, ratio in zip(indices, ratios, strict=True)}


def forget_truth_ratios(eval_log: Mapping[str, Any]) -> dict[str, float]:
    """Per-question truth ratios on the forget split, keyed by sample index.

    Recomputed from ``forget_Q_A_PARA_Prob`` / ``forget_Q_A_PERT_Prob`` average losses; a log
    without those falls back to the ``forget_truth_ratio`` scores.
    """
    correct_key, wrong_key, _ = _TRUTH_RATIOS["forget_truth_ratio"]
    if _has_samples(eval_log, correct_key, wrong_key):
        return _truth_ratios_by_index(eval_log, correct_key, wrong_key)
    return {
        idx: sample["score"]
        for idx, sample in _samples(eval_log, "forget_truth_ratio").items()
        if sample is not None and sample.get("score") is not None
    }


def _mean(values: list[Any]) -> float:
    if not values:
        raise ValueError("no per-sample values to average")
    return float(
        np.mean(np.mean(np.asarray(values, dtype=np.float64).reshape(len(values), -1), axis=1))
    )


# --------------------------------------------------------------------------- same forget split


def forget_gold_answers(eval_log: Mapping[str, Any]) -> dict[str, str | None]:
    """The forget questions a log scored: sample index -> logged gold answer.

    The indices are those of `forget_truth_ratios`; the gold answer is the
    ``forget_Q_A_ROUGE`` ``ground_truth`` (None where the log holds no generations).
    """
    key = "forget_Q_A_ROUGE"
    gold = _samples(eval_log, key) if _has_samples(eval_log, key) else {}
    return {idx: (gold.get(idx) or {}).get("ground_truth") for idx in forget_truth_ratios(eval_log)}


def check_same_forget_split(forget_gold: Mapping[str, str | None],
                            retain_log: Mapping[str, Any],
                            name: str = "the evaluation log") -> None:
    """Raise ValueError unless the retain log scored the same forget questions.

    ``forget_gold`` maps each forget sample index to its gold answer (None when unknown):
    `forget_gold_answers` of an evaluation log, or a forget split's answers before a model
    is evaluated against the retain log; ``name`` says which in the message. The indices
    (hence their count) must match and, where both sides know them, the gold answers:
    forget quality and privleak are meaningless against a retain model evaluated on
    another split.
    """
    retain_idx = list(forget_truth_ratios(retain_log))
    if len(retain_idx) != len(forget_gold):
        raise ValueError(
            f"the retain log scored {len(retain_idx)} forget questions but {name} has "
            f"{len(forget_gold)}: they were evaluated on different forget splits (pass the "
            "retain model's log for the same forget split, e.g. retain90 for forget10) or with "
            "another max_samples"
        )
    if sorted(retain_idx) != sorted(forget_gold):
        raise ValueError(f"the retain log and {name} cover different forget indices")
    retain_gold = forget_gold_answers(retain_log)
    for idx, gold in forget_gold.items():
        logged = retain_gold.get(idx)
        if gold is not None and logged is not None and gold != logged:
            raise ValueError(
                f"forget question {idx} differs between {name} and the retain log ({gold!r} "
                f"vs {logged!r}): the retain log does not match; pass the retain model's log "
                "for the same forget split and data source."
            )


# --------------------------------------------------------------------------- recomputation


def _has_attack_scores(entry: Any) -> bool:
    """Whether a ``mia_*`` entry holds the attack's forget and holdout scores."""
    return isinstance(entry, Mapping) and "forget" in entry and "holdout" in entry


def _mia_auc(eval_log: Mapping[str, Any], key: str) -> float:
    """The attack's AUC from the entry's forget and holdout scores."""
    entry = eval_log[key]
    return tm.auc_forget_vs_holdout(
        _field(entry, "forget", "score"), _field(entry, "holdout", "score")
    )


def _truth_ratio_score(eval_log: Mapping[str, Any], key: str) -> float:
    """The truth-ratio aggregate, from the answers' average losses where the log has them."""
    correct_key, wrong_key, aggregate = _TRUTH_RATIOS[key]
    if _has_samples(eval_log, correct_key, wrong_key):
        ratios = list(_truth_ratios_by_index(eval_log, correct_key, wrong_key).values())
    else:
        ratios = _field(eval_log, key, "score")
    return aggregate(ratios)


def _normalised_probability(eval_log: Mapping[str, Any], key: str) -> float:
    """Mean normalised probability, from the answers' logged ``prob`` where the log has them."""
    prefix = key.removesuffix("_Prob_normalised")
    correct_key, wrong_key = f"{prefix}_Prob", f"{prefix}_PERT_Prob"
    if not _has_samples(eval_log, correct_key, wrong_key):
        return _mean(_field(eval_log, key, "prob"))
    correct = _samples(eval_log, correct_key)
    wrong = _samples(eval_log, wrong_key)
    indices = [i for i in correct if correct[i] is not None and wrong[i] is not None]
    probs = tm.normalised_probability(
        [correct[i]["prob"] for i in indices], [wrong[i]["prob"] for i in indices]
    )
    return float(np.mean(probs))


def _rouge_recall(eval_log: Mapping[str, Any], key: str) -> float:
    """Mean logged ``rougeL_recall``."""
    return _mean(_field(eval_log, key, "rougeL_recall"))


def _rescored_rouge_recall(eval_log: Mapping[str, Any], key: str) -> float:
    """Mean ``rougeL_recall`` re-scored from each logged ``ground_truth`` and ``generation``."""
    return _mean([
        tm.rouge_recall(sample["ground_truth"], sample["generation"])["rougeL_recall"]
        for sample in _samples(eval_log, key).values()
        if sample is not None and sample.get("generation") is not None
    ])


def _probability(eval_log: Mapping[str, Any], key: str) -> float:
    """Mean ``prob`` (perturbed answers' lists averaged per sample first)."""
    return _mean(_field(eval_log, key, "prob"))


def _score(eval_log: Mapping[str, Any], key: str) -> float | None:
    """Mean per-sample ``score``; None when the entry holds none."""
    scores = _field(eval_log, key, "score")
    return _mean(scores) if scores else None


#: How each kind of entry (`_entry_kind`) is aggregated: ``(log, key)`` to the entry's
#: number, or None when it has none.
_AGGREGATES: dict[str, Callable[[Mapping[str, Any], str], float | None]] = {
    "mia": _mia_auc,
    "truth_ratio": _truth_ratio_score,
    "normalised_probability": _normalised_probability,
    "rouge": _rouge_recall,
    "rescored_rouge": _rescored_rouge_recall,
    "probability": _probability,
    "score": _score,
}


def _entry_kind(key: str, entry: Any, rescore_rouge: bool) -> str | None:
    """The kind of aggregate a log entry has (a key of `_AGGREGATES`), None for none.

    The order matters: truth ratios and normalised probabilities are recomputed from other
    entries even when their own per-sample values are missing.
    """
    if not isinstance(entry, Mapping):
        return None
    if key.startswith("mia_") and _has_attack_scores(entry):
        return "mia"
    if key in _TRUTH_RATIOS:
        return "truth_ratio"
    if key.endswith("_Prob_normalised"):
        return "normalised_probability"
    if "value_by_index" not in entry:
        return None
    if key.endswith("_ROUGE"):
        return "rescored_rouge" if rescore_rouge else "rouge"
    return "probability" if key.endswith("_Prob") else "score"


def recompute_metrics(
    eval_log: Mapping[str, Any], *, rescore_rouge: bool = False
) -> dict[str, float]:
    """Every aggregate of an evaluation log that needs no reference model, recomputed.

    From the per-sample values only: probabilities (mean ``prob``; perturbed ones averaged
    per sample first), ROUGE (mean ``rougeL_recall``; with ``rescore_rouge`` re-scored from
    each logged ``ground_truth`` and ``generation``), truth ratios (from the average losses,
    forget and utility aggregators), normalised probabilities, ES, EM, any other per-sample
    ``score``, membership-inference AUCs from the forget/holdout scores, and model utility
    from its nine recomputed components. Keys are the log's metric names; forget quality and
    privleak depend on a retain model and are left to `summarize_eval_log`.
    """
    out: dict[str, float] = {}
    for key, entry in eval_log.items():
        kind = _entry_kind(key, entry, rescore_rouge)
        value = None if kind is None else _AGGREGATES[kind](eval_log, key)
        if value is not None:
            out[key] = value
    if all(key in out for key in tm.MODEL_UTILITY_KEYS):
        out["model_utility"] = tm.model_utility({k: out[k] for k in tm.MODEL_UTILITY_KEYS})
    return out


def summarize_eval_log(
    eval_log: Mapping[str, Any], retain_log: Mapping[str, Any] | None = None,
    *, prob_mean: bool = False,
) -> dict[str, float]:
    """The TOFU_SUMMARY.json numbers, recomputed from the per-sample values.

    Keys as in TOFU_SUMMARY.json, sorted: `SUMMARY_KEYS` the log allows for a log this course
    wrote, `PUBLISHED_SUMMARY_KEYS` for one open-unlearning wrote (no `SETTINGS_KEY`), so the
    published summaries are reproduced as they are; ``prob_mean`` adds `PROB_MEAN_KEY` (from
    the forget set's paraphrased and perturbed answers' losses). With a retain
    model's log (evaluated on the same forget split, else ValueError) it adds forget quality
    (KS test of the two forget truth-ratio distributions) and takes privleak's reference
    from the retain log's recomputed ``mia_min_k`` AUC; without one, privleak uses
    open-unlearning's default reference AUC of 0.5 (how the retain models' own logs were
    summarised) and forget quality is left out.
    """
    metrics = recompute_metrics(eval_log)
    keys = SUMMARY_KEYS if SETTINGS_KEY in eval_log else PUBLISHED_SUMMARY_KEYS
    summary = {key: metrics[key] for key in keys if key in metrics}
    if prob_mean:
        correct_key, wrong_key, _ = _TRUTH_RATIOS["forget_truth_ratio"]
        _, correct, wrong = _paired_losses(eval_log, correct_key, wrong_key)
        summary[PROB_MEAN_KEY] = tm.truth_ratio_prob_mean_score(correct, wrong)
    reference_auc = tm.PRIVLEAK_DEFAULT_RETAIN_AUC
    if retain_log is not None:
        check_same_forget_split(forget_gold_answers(eval_log), retain_log)
        check_same_mask_mode(eval_log, retain_log)
        summary["forget_quality"] = tm.forget_quality(
            list(forget_truth_ratios(eval_log).values()),
            list(forget_truth_ratios(retain_log).values()),
        )
        if "mia_min_k" in metrics:
            if not _has_attack_scores(retain_log.get("mia_min_k")):
                raise ValueError("the retain log has no mia_min_k scores for privleak")
            reference_auc = _mia_auc(retain_log, "mia_min_k")
    if "mia_min_k" in metrics:
        summary["privleak"] = tm.privleak(metrics["mia_min_k"], reference_auc)
    return dict(sorted(summary.items()))


# --------------------------------------------------------------------------- mask modes

#: The mask a log without `SETTINGS_KEY` (one open-unlearning wrote) was computed with.
PUBLISHED_MASK_MODE = "open-unlearning"


def log_mask_mode(eval_log: Mapping[str, Any]) -> str:
    """The attention mask a log was computed with; open-unlearning's own logs carry none."""
    settings = eval_log.get(SETTINGS_KEY)
    if isinstance(settings, Mapping) and settings.get("mask_mode"):
        return settings["mask_mode"]
    return PUBLISHED_MASK_MODE


def check_same_mask_mode(eval_log: Mapping[str, Any], reference: Mapping[str, Any]) -> None:
    """Raise ValueError unless a log and its reference used the same attention mask."""
    mine, theirs = log_mask_mode(eval_log), log_mask_mode(reference)
    if mine != theirs:
        raise ValueError(
            f"the reference log was evaluated with mask_mode={theirs!r} but this model with "
            f"mask_mode={mine!r}; truth ratios from different masks are not comparable. "
            f"Evaluate with mask_mode={theirs!r} (published open-unlearning logs need "
            "'open-unlearning'), or evaluate the retain model with this course's code."
        )
