"""TOFU metrics as pure aggregations of per-sample numbers (no model needed).

Every function here takes numbers that a model pass produced (average losses, probabilities,
generations, teacher-forced argmax ids, token log-probabilities) and turns them into the
numbers the TOFU paper and open-unlearning report. The formulas follow open-unlearning's
metrics to the last digit, quirks included; each quirk is named in the docstring where it
bites:

* the truth ratio divides by ``P_c + 1e-10`` and the forget aggregator uses ``1/(TR + 1e-10)``;
* the normalised probability adds ``1e-10`` to its denominator;
* privleak adds ``1e-10`` to the reference and defaults the retain AUC to 0.5;
* extraction strength never drops below ``1/|y|`` (open-unlearning's loop leaves ``k = |y|-1``
  when no suffix is right);
* exact memorisation per sample is a float32 number (computed in torch).

The glossary: ``avg_loss`` is the mean token cross-entropy over an answer's label tokens and
``prob = exp(-avg_loss)`` the length-normalised (geometric-mean) probability.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn.metrics import roc_auc_score

#: The small constant open-unlearning adds to denominators (truth ratio, normalised
#: probability, privleak).
EPS = 1e-10

#: Min-K% Prob's k in open-unlearning's TOFU evaluation configuration (k = 0.4).
MIN_K_FRACTION = 0.4

#: Reference AUC privleak falls back to when no retain model log is given
#: (open-unlearning's `ref_value`); the retain models' own logs were computed with it.
PRIVLEAK_DEFAULT_RETAIN_AUC = 0.5

#: The nine components of model utility, named as in TOFU_EVAL.json, in open-unlearning's
#: order (the harmonic mean is order-independent in exact arithmetic, not to the last bit).
MODEL_UTILITY_KEYS: tuple[str, ...] = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)


def _as_array(values: Any) -> NDArray[Any]:
    """A numpy view of a list, numpy array or (possibly CUDA) torch tensor."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _as_float_array(values: ArrayLike) -> NDArray[np.floating[Any]]:
    """The values as a floating array, keeping a float input's dtype (float32 stays)."""
    array = _as_array(values)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def _as_float64(values: ArrayLike) -> NDArray[np.float64]:
    """The values as a float64 array, for aggregations whose log values are float64."""
    return np.asarray(_as_float_array(values), dtype=np.float64)


def probability_from_loss(avg_loss: ArrayLike) -> NDArray[np.floating[Any]]:
    """Length-normalised probability of an answer: ``p = exp(-avg_loss)``.

    ``avg_loss = (1/|y|) sum_t -log p(y_t | x, y_<t)``, so ``p`` is the geometric mean of the
    token probabilities. Vectorised; returns an array of the input's shape (0-d for a scalar).
    Note that open-unlearning's logged ``prob`` was exponentiated in float32 by torch, so it
    differs from ``exp(-avg_loss)`` in float64 by ~1e-7 relative; aggregations that must match
    a log to the last digit use the logged ``prob``.
    """
    return np.exp(-_as_float_array(avg_loss))


def _per_question(correct: ArrayLike, wrong: ArrayLike, reduce: Any, name: str
                  ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The correct answers' values and the perturbed answers' values reduced per question
    (`reduce` over every trailing axis), in float64; ValueError naming `name` when the two
    describe different numbers of questions."""
    correct, wrong = _as_float64(correct), _as_float64(wrong)
    if wrong.ndim > 1:
        wrong = reduce(wrong, axis=tuple(range(1, wrong.ndim)))
    if correct.shape != wrong.shape:
        raise ValueError(
            f"{name}: {correct.shape[0] if correct.ndim else 1} correct answers but "
            f"{wrong.shape[0] if wrong.ndim else 1} sets of perturbed answers"
        )
    return correct, wrong


def _correct_and_wrong(para_avg_loss: ArrayLike, pert_avg_losses: ArrayLike
                       ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(P_c, P_w)`` per question from the correct and the perturbed answers' average losses."""
    correct, wrong = _per_question(para_avg_loss, pert_avg_losses, np.mean, "truth_ratio")
    return np.exp(-correct), np.exp(-wrong)


def truth_ratio(para_avg_loss: ArrayLike, pert_avg_losses: ArrayLike) -> NDArray[np.float64]:
    """Truth ratio per question: ``TR = P_w / (P_c + 1e-10)``.

    ``P_c = exp(-L_c)`` with ``L_c`` the average loss of the correct answer (the paraphrased
    answer on forget/retain, the `answer` for real authors and world facts) and
    ``P_w = exp(-(1/m) sum_i L_w,i)`` with ``L_w,i`` the average losses of the ``m`` perturbed
    (wrong) answers: the geometric mean of the perturbed probabilities.

    Args:
        para_avg_loss: shape ``(n,)``, one correct-answer average loss per question.
        pert_avg_losses: shape ``(n, m)`` (or ``(n,)`` for a single wrong answer each).

    Returns:
        shape ``(n,)``, the per-question truth ratios (``forget_truth_ratio`` scores).
    """
    correct, wrong = _correct_and_wrong(para_avg_loss, pert_avg_losses)
    return wrong / (correct + EPS)


def truth_ratio_forget_score(tr: ArrayLike) -> float:
    """Forget-set truth-ratio score: ``mean_j min(TR_j, 1 / (TR_j + 1e-10))``.

    1 when the model finds right and wrong answers equally likely (nothing to tell them apart
    by), towards 0 when it strongly prefers either. Open-unlearning's ``closer_to_1_better``
    aggregator, the ``agg_value`` of ``forget_truth_ratio``.
    """
    values = _as_float64(tr)
    return float(np.mean(np.minimum(values, 1 / (values + EPS))))


def truth_ratio_prob_mean_score(para_avg_loss: ArrayLike, pert_avg_losses: ArrayLike) -> float:
    """Forget-set "extent of knowledge": ``mean_j P_c / (P_c + P_w + 1e-10)``.

    0.5 when the model finds right and wrong answers equally likely, towards 1 when it prefers
    the right one, towards 0 when it prefers the wrong ones; ``P_c``, ``P_w`` as in
    `truth_ratio`. Open-unlearning's ``prob_mean`` truth-ratio aggregator, which its newer
    configs report as ``forget_truth_ratio``; here an opt-in beside the published logs'
    `truth_ratio_forget_score`.
    """
    correct, wrong = _correct_and_wrong(para_avg_loss, pert_avg_losses)
    return float(np.mean(correct / (correct + wrong + EPS)))


def truth_ratio_utility_score(tr: ArrayLike) -> float:
    """Retain / real-authors / world-facts truth-ratio score: ``mean_j max(0, 1 - TR_j)``.

    Higher when the model prefers the right answer (``TR < 1``). Open-unlearning's
    ``true_better`` aggregator, the ``agg_value`` of ``retain_Truth_Ratio``, ``ra_Truth_Ratio``
    and ``wf_Truth_Ratio`` (the three truth-ratio components of model utility).
    """
    values = _as_float64(tr)
    return float(np.mean(np.maximum(0, 1 - values)))


def normalised_probability(p_true: ArrayLike, p_perturbed: ArrayLike) -> NDArray[np.float64]:
    """Probability of the right answer among the options: ``p / (p + sum_i p_i + 1e-10)``.

    ``p`` is the length-normalised probability of the correct answer and ``p_i`` those of the
    perturbed answers (3 for real authors and world facts). Summed over every trailing axis of
    ``p_perturbed`` (shape ``(n, m)``); returns shape ``(n,)`` (the
    ``ra_Q_A_Prob_normalised`` / ``wf_Q_A_Prob_normalised`` per-sample ``prob``; their mean is
    the model-utility component).
    """
    correct, wrong = _per_question(p_true, p_perturbed, np.sum, "normalised_probability")
    return correct / (correct + wrong + EPS)


def forget_quality(tr_model: ArrayLike, tr_retain: ArrayLike) -> float:
    """Forget quality: the two-sided Kolmogorov-Smirnov p-value between truth ratios.

    ``FQ = KS_2samp({TR_j(model)}, {TR_j(retain model)}).pvalue`` over the raw per-question
    truth ratios on the forget split. High (towards 1) when the unlearned model's truth-ratio
    distribution is indistinguishable from a model never trained on the forget set.
    """
    model = _as_float_array(tr_model)
    retain = _as_float_array(tr_retain)
    return float(stats.ks_2samp(model, retain).pvalue)


def forget_quality_at_distance(distance: float, n_questions: int) -> float:
    """The forget quality a KS distance `distance` earns with `n_questions` forget questions.

    Forget quality is a p-value, not an effect size: it is ``P(D >= distance)`` for two
    samples of `n_questions` truth ratios drawn from one distribution, so the same distance
    between the model's and the retain model's truth ratios scores very differently on
    forget01 (40 questions), TOFU-mini's forget10 (100) and TOFU's forget10 (400). And a high
    value only says the test found no difference, which is not evidence that there is none.

    Computed with `forget_quality` itself, on two made-up samples whose empirical CDFs are
    ``ceil(distance * n) / n`` apart (two samples of n values can only be k/n apart), so it
    is exactly the number a run with that distance would report (where scipy's exact
    computation gives up, e.g. D = 0.46 at 400 questions, a run falls back to the asymptotic
    value as this does; the warning it prints then is silenced here). Distance 0 (the same
    truth ratios as the retain model) earns 1.
    """
    if not 0 <= distance <= 1:
        raise ValueError(f"a KS distance lies in [0, 1], not {distance}")
    if n_questions < 1:
        raise ValueError(f"n_questions must be at least 1, not {n_questions}")
    shift = int(np.ceil(distance * n_questions - 1e-9))
    retain = np.arange(n_questions, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful",
                                RuntimeWarning)
        return forget_quality(retain + shift, retain)


def model_utility(components: Mapping[str, float]) -> float:
    """Model utility: the harmonic mean of nine numbers, ``MU = 9 / sum_c 1/c``.

    The components are {retain (retain_perturbed), real authors, world facts} x
    {probability (normalised for real authors / world facts), ROUGE-L recall, truth ratio in
    the ``max(0, 1 - TR)`` form}, keyed as in TOFU_EVAL.json (`MODEL_UTILITY_KEYS`).
    Raises ValueError naming any missing or unexpected key.
    """
    missing = [key for key in MODEL_UTILITY_KEYS if key not in components]
    unexpected = sorted(set(components) - set(MODEL_UTILITY_KEYS))
    if missing or unexpected:
        raise ValueError(
            f"model_utility needs exactly the nine keys {list(MODEL_UTILITY_KEYS)}; "
            f"missing {missing}, unexpected {unexpected}"
        )
    return float(stats.hmean([components[key] for key in MODEL_UTILITY_KEYS]))


def min_k_score(token_logprobs: ArrayLike, k: float = MIN_K_FRACTION) -> float:
    """Min-K% Prob membership score: ``-(1/K) sum of the K lowest token log-probs``.

    ``K = max(1, floor(k * T))`` for ``T`` scored tokens; higher means "less likely a member".
    An empty sequence scores 0 (as in open-unlearning). The arithmetic stays in the input's
    floating dtype (open-unlearning's logged scores are float32), so pass float32 log-probs
    to reproduce a log bit for bit. Open-unlearning scores the answer tokens except the final
    end-of-turn token.
    """
    logprobs = _as_float_array(token_logprobs).ravel()
    if logprobs.size == 0:
        return 0.0
    num_k = max(1, int(len(logprobs) * k))
    return -float(np.mean(np.sort(logprobs)[:num_k]))


def auc_forget_vs_holdout(
    forget_scores: Sequence[float] | ArrayLike, holdout_scores: Sequence[float] | ArrayLike
) -> float:
    """AUC of a membership-inference attack: ``roc_auc_score(labels, scores)``.

    Forget samples are labelled 0 and holdout samples 1, and the scores are the attack's
    (higher = less likely a member, e.g. loss or Min-K%). So AUC = P(score(holdout) >
    score(forget)), ties counting one half: 1 when the forget set is plainly memorised,
    0.5 when it looks like unseen data.
    """
    forget = _as_float_array(forget_scores).ravel()
    holdout = _as_float_array(holdout_scores).ravel()
    if forget.size == 0 or holdout.size == 0:
        raise ValueError("auc_forget_vs_holdout needs at least one forget and one holdout score")
    scores = np.concatenate([forget, holdout])
    labels = np.array([0] * forget.size + [1] * holdout.size)
    return float(roc_auc_score(labels, scores))


def privleak(auc_model: float, auc_retain: float = PRIVLEAK_DEFAULT_RETAIN_AUC) -> float:
    """PrivLeak: ``((1 - AUC_model) - (1 - AUC_retain)) / ((1 - AUC_retain) + 1e-10) * 100``.

    The relative gap (in %) of the model's Min-K% AUC to the retain model's, in MUSE's
    ``1 - AUC`` convention: 0 is ideal, strongly negative means the forget set is still
    detectable (under-unlearning), positive means over-unlearning. Without a retain model
    open-unlearning uses ``AUC_retain = 0.5`` (`PRIVLEAK_DEFAULT_RETAIN_AUC`); that is how
    the retain models' own logged privleak was computed.
    """
    score = 1 - auc_model
    ref = 1 - auc_retain
    return (score - ref) / (ref + EPS) * 100


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_recall(gold: str, generated: str) -> dict[str, float]:
    """ROUGE of a generation against the gold answer, as open-unlearning logs it.

    ``RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(gold, generated)``;
    ROUGE-L recall = LCS(gold, generated) / |gold| in stemmed word tokens, the number TOFU
    reports. Returns ``{"rouge1_recall", "rougeL_f1", "rougeL_recall"}``.
    """
    scores = _rouge_scorer().score(gold, generated)
    return {
        "rouge1_recall": scores["rouge1"].recall,
        "rougeL_f1": scores["rougeL"].fmeasure,
        "rougeL_recall": scores["rougeL"].recall,
    }


def _preds_and_labels(pred_ids: ArrayLike, label_ids: ArrayLike) -> tuple[NDArray, NDArray]:
    preds = _as_array(pred_ids).ravel()
    labels = _as_array(label_ids).ravel()
    if preds.shape != labels.shape:
        raise ValueError(
            f"{preds.size} predictions for {labels.size} label tokens: pass the teacher-forced "
            "argmax at exactly the label positions"
        )
    return preds, labels


def extraction_strength(pred_ids: ArrayLike, label_ids: ArrayLike) -> float:
    """Extraction strength: ``ES = 1 - k / |y|``.

    ``k`` is the smallest index from which every teacher-forced argmax prediction of
    ``y[k:]`` is right (``k = 0``: the whole answer is reproduced, ES = 1). Matching
    open-unlearning's loop, ``k`` never exceeds ``|y| - 1``: when not even the last token is
    right ES is ``1/|y|``, not 0. An empty answer scores 0. Open-unlearning drops the final
    end-of-turn label before scoring; pass ``y`` the same way to reproduce its logs.
    """
    preds, labels = _preds_and_labels(pred_ids, label_ids)
    n = labels.size
    if n == 0:
        return 0.0
    wrong = np.nonzero(preds != labels)[0]
    k = 0 if wrong.size == 0 else min(int(wrong[-1]) + 1, n - 1)
    return 1 - (k / n)


def exact_memorization(pred_ids: ArrayLike, label_ids: ArrayLike) -> float | None:
    """Exact memorisation: ``EM = (1/|y|) sum_t 1[argmax_t = y_t]``.

    The share of answer tokens whose teacher-forced argmax is right. Computed as a float32
    quotient as in open-unlearning (torch int tensor / int), so it matches logged per-sample
    scores to the last digit. Returns None for an empty answer (open-unlearning logs None and
    leaves it out of the mean). Pass ``y`` without the final end-of-turn label to reproduce
    open-unlearning's logs.
    """
    preds, labels = _preds_and_labels(pred_ids, label_ids)
    if labels.size == 0:
        return None
    correct = np.float32(np.count_nonzero(preds == labels))
    return float(correct / np.float32(labels.size))
