"""TOFU metric aggregations: hand-computed cases and open-unlearning's published logs.

The logs are read by path from ../shared/tofu/eval_logs beside the checkout (CI has it there).
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from shared import LOG_ROOT

from unlearnlib.evaluation import tofu_metrics as tm

FULL = "tofu_Llama-3.2-1B-Instruct_full"
LOGS = {
    "full_forget01": LOG_ROOT / FULL / "evals_forget01",
    "full_forget05": LOG_ROOT / FULL / "evals_forget05",
    "full_forget10": LOG_ROOT / FULL / "evals_forget10",
    "retain99": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain99",
    "retain95": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain95",
    "retain90": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain90",
}
TRUTH_RATIO_SOURCES = {
    "forget_truth_ratio": ("forget_Q_A_PARA_Prob", "forget_Q_A_PERT_Prob"),
    "retain_Truth_Ratio": ("retain_Q_A_PARA_Prob", "retain_Q_A_PERT_Prob"),
    "ra_Truth_Ratio": ("ra_Q_A_Prob", "ra_Q_A_PERT_Prob"),
    "wf_Truth_Ratio": ("wf_Q_A_Prob", "wf_Q_A_PERT_Prob"),
}


@cache
def _load(name: str, filename: str = "TOFU_EVAL.json") -> dict[str, Any]:
    return json.loads((LOGS[name] / filename).read_text(encoding="utf-8"))


def _by_index(log: dict[str, Any], key: str) -> dict[str, Any]:
    return log[key]["value_by_index"]


# --------------------------------------------------------------------------- probability


def test_probability_from_loss_hand() -> None:
    assert tm.probability_from_loss(0.0) == 1.0
    np.testing.assert_allclose(tm.probability_from_loss([math.log(2), math.log(4)]), [0.5, 0.25])


def test_probability_from_loss_matches_logged_prob() -> None:
    samples = _by_index(_load("full_forget10"), "forget_Q_A_Prob").values()
    losses = [s["avg_loss"] for s in samples]
    probs = [s["prob"] for s in samples]
    # logged probs were exponentiated in float32 by torch
    np.testing.assert_allclose(tm.probability_from_loss(losses), probs, rtol=1e-6)


# --------------------------------------------------------------------------- truth ratio


def test_truth_ratio_hand() -> None:
    # P_c = 0.5; P_w = geometric mean of (1, 0.25) = 0.5, or 0.25 for (0.25, 0.25)
    tr = tm.truth_ratio(
        [math.log(2), math.log(2)], [[0.0, math.log(4)], [math.log(4), math.log(4)]]
    )
    np.testing.assert_allclose(tr, [1.0, 0.5], rtol=1e-9)
    # the 1e-10 in the denominator: TR = P_w / (P_c + 1e-10)
    assert tm.truth_ratio([0.0], [[0.0]])[0] == 1 / (1 + 1e-10)


def test_truth_ratio_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="perturbed"):
        tm.truth_ratio([0.1, 0.2], [[0.1, 0.2, 0.3]])


def test_truth_ratio_aggregators_hand() -> None:
    tr = [0.5, 2.0, 1.0]
    assert tm.truth_ratio_forget_score(tr) == pytest.approx((0.5 + 0.5 + 1.0) / 3, rel=1e-9)
    assert tm.truth_ratio_utility_score(tr) == pytest.approx(0.5 / 3, rel=1e-12)


@pytest.mark.parametrize("name", list(LOGS))
@pytest.mark.parametrize("key", list(TRUTH_RATIO_SOURCES))
def test_truth_ratio_matches_logged_scores(name: str, key: str) -> None:
    log = _load(name)
    correct_key, wrong_key = TRUTH_RATIO_SOURCES[key]
    correct = _by_index(log, correct_key)
    wrong = _by_index(log, wrong_key)
    logged = _by_index(log, key)
    assert list(correct) == list(logged)
    tr = tm.truth_ratio(
        [correct[i]["avg_loss"] for i in correct], [wrong[i]["avg_loss"] for i in correct]
    )
    assert tr.tolist() == [logged[i]["score"] for i in correct]
    # forget uses closer-to-1 (min(TR, 1/TR)), the utility splits use max(0, 1 - TR)
    aggregate, other = tm.truth_ratio_forget_score, tm.truth_ratio_utility_score
    if not key.startswith("forget"):
        aggregate, other = other, aggregate
    assert aggregate(tr) == pytest.approx(log[key]["agg_value"], rel=1e-12)
    assert other(tr) != pytest.approx(log[key]["agg_value"], rel=1e-3)


# --------------------------------------------------------------------------- normalised prob


def test_normalised_probability_hand() -> None:
    out = tm.normalised_probability([0.2, 0.5], [[0.2, 0.2, 0.4], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(out, [0.2, 1.0], rtol=1e-9)
    assert tm.normalised_probability([0.0], [[0.0, 0.0]])[0] == 0.0  # the 1e-10 guards 0/0


@pytest.mark.parametrize("name", ["full_forget10", "retain90"])
@pytest.mark.parametrize("split", ["ra", "wf"])
def test_normalised_probability_matches_log(name: str, split: str) -> None:
    log = _load(name)
    correct = _by_index(log, f"{split}_Q_A_Prob")
    wrong = _by_index(log, f"{split}_Q_A_PERT_Prob")
    logged = _by_index(log, f"{split}_Q_A_Prob_normalised")
    probs = tm.normalised_probability(
        [correct[i]["prob"] for i in correct], [wrong[i]["prob"] for i in correct]
    )
    assert probs.tolist() == [logged[i]["prob"] for i in correct]
    assert float(np.mean(probs)) == pytest.approx(
        log[f"{split}_Q_A_Prob_normalised"]["agg_value"], rel=1e-12
    )


# --------------------------------------------------------------------------- forget quality, MU


def test_forget_quality_full_vs_retain90() -> None:
    full = [s["score"] for s in _by_index(_load("full_forget10"), "forget_truth_ratio").values()]
    retain = [s["score"] for s in _by_index(_load("retain90"), "forget_truth_ratio").values()]
    fq = tm.forget_quality(full, retain)
    logged = _load("full_forget10", "TOFU_SUMMARY.json")["forget_quality"]
    assert fq == pytest.approx(3.9054713571083378e-22, rel=1e-9)
    assert fq == pytest.approx(logged, rel=1e-9)
    assert tm.forget_quality(retain, retain) == 1.0


def test_forget_quality_at_distance_is_a_p_value_that_depends_on_n() -> None:
    by_n = {n: tm.forget_quality_at_distance(0.21, n) for n in (40, 100, 400)}
    assert by_n[40] == pytest.approx(0.2657, abs=1e-4)  # D rounds up to 9/40 = 0.225
    assert by_n[100] == pytest.approx(0.02406, abs=1e-5)  # the tiny NPO run's FQ
    assert by_n[400] < 1e-7
    assert tm.forget_quality_at_distance(0.46, 100) == pytest.approx(6.42e-10, rel=1e-3)


def test_forget_quality_at_distance_matches_a_run_with_that_distance() -> None:
    rng = np.random.default_rng(0)
    model, retain = rng.lognormal(0.2, 1, 100), rng.lognormal(0, 1, 100)
    result = stats.ks_2samp(model, retain)
    assert tm.forget_quality_at_distance(result.statistic, 100) == pytest.approx(result.pvalue,
                                                                                 rel=1e-12)


def test_forget_quality_at_distance_warns_of_nothing_and_checks_its_input() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 < tm.forget_quality_at_distance(0.46, 400) < 1e-30
    assert tm.forget_quality_at_distance(0.0, 100) == 1.0  # the retain model's own ratios
    with pytest.raises(ValueError, match="KS distance"):
        tm.forget_quality_at_distance(-0.1, 100)
    with pytest.raises(ValueError, match="n_questions"):
        tm.forget_quality_at_distance(0.2, 0)


@pytest.mark.parametrize(
    ("name", "expected"), [("full_forget10", 0.5991534707368931), ("retain90", 0.5911246639353407)]
)
def test_model_utility_from_logged_components(name: str, expected: float) -> None:
    log = _load(name)
    mu = tm.model_utility({key: log[key]["agg_value"] for key in tm.MODEL_UTILITY_KEYS})
    assert mu == pytest.approx(expected, rel=1e-9)
    assert mu == pytest.approx(log["model_utility"]["agg_value"], rel=1e-9)


def test_model_utility_hand_and_keys() -> None:
    components = dict.fromkeys(tm.MODEL_UTILITY_KEYS, 0.5)
    assert tm.model_utility(components) == pytest.approx(0.5)
    components["retain_Q_A_Prob"] = 1.0
    assert tm.model_utility(components) == pytest.approx(9 / (1 + 8 * 2))
    with pytest.raises(ValueError, match="wf_Truth_Ratio"):
        tm.model_utility({k: 0.5 for k in tm.MODEL_UTILITY_KEYS if k != "wf_Truth_Ratio"})
    with pytest.raises(ValueError, match="forget_Q_A_Prob"):
        tm.model_utility({**dict.fromkeys(tm.MODEL_UTILITY_KEYS, 0.5), "forget_Q_A_Prob": 0.1})


# --------------------------------------------------------------------------- MIA, privleak


def test_min_k_score_hand() -> None:
    logprobs = [-1.0, -5.0, -2.0, -4.0, -3.0]
    assert tm.min_k_score(logprobs) == 4.5  # K = floor(0.4 * 5) = 2 lowest: -5, -4
    assert tm.min_k_score(logprobs, k=0.1) == 5.0  # K = max(1, 0) = 1
    assert tm.min_k_score(logprobs, k=1.0) == 3.0
    assert tm.min_k_score([]) == 0.0
    assert tm.min_k_score(torch.tensor(logprobs)) == 4.5
    # float32 input stays float32, as open-unlearning's logged scores
    lp32 = np.array([-0.1, -0.7, -0.3], dtype=np.float32)
    assert tm.min_k_score(lp32) == float(np.float32(0.7))


def test_auc_hand() -> None:
    assert tm.auc_forget_vs_holdout([0.1, 0.2], [0.3, 0.4]) == 1.0  # holdout scores higher
    assert tm.auc_forget_vs_holdout([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert tm.auc_forget_vs_holdout([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert tm.auc_forget_vs_holdout([0.1, 0.3], [0.2, 0.4]) == 0.75
    with pytest.raises(ValueError):
        tm.auc_forget_vs_holdout([], [0.1])


@pytest.mark.parametrize("name", list(LOGS))
def test_mia_aucs_match_log(name: str) -> None:
    log = _load(name)
    mia_keys = [key for key in log if key.startswith("mia_")]
    assert "mia_min_k" in mia_keys
    for key in mia_keys:
        forget = [s["score"] for s in _by_index(log[key], "forget").values()]
        holdout = [s["score"] for s in _by_index(log[key], "holdout").values()]
        auc = tm.auc_forget_vs_holdout(forget, holdout)
        assert auc == pytest.approx(log[key]["auc"], rel=1e-12), key
        assert auc == pytest.approx(log[key]["agg_value"], rel=1e-12), key


def test_privleak_hand() -> None:
    assert tm.privleak(0.5, 0.5) == 0.0
    assert tm.privleak(1.0, 0.5) == pytest.approx(-100.0)
    assert tm.privleak(0.25) == pytest.approx(50.0)  # default reference AUC 0.5
    assert tm.privleak(1.0, 1.0) == 0.0  # the 1e-10 keeps 0/0 finite


@pytest.mark.parametrize(
    ("name", "retain"),
    [("full_forget10", "retain90"), ("full_forget05", "retain95"), ("full_forget01", "retain99")],
)
def test_privleak_full_uses_retain_auc(name: str, retain: str) -> None:
    auc_model = _load(name)["mia_min_k"]["auc"]
    auc_retain = _load(retain)["mia_min_k"]["auc"]
    expected = _load(name)["privleak"]["agg_value"]
    assert tm.privleak(auc_model, auc_retain) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["retain90", "retain95", "retain99"])
def test_privleak_retain_logs_use_default_reference(name: str) -> None:
    log = _load(name)
    assert tm.privleak(log["mia_min_k"]["auc"]) == pytest.approx(
        log["privleak"]["agg_value"], rel=1e-9
    )


# --------------------------------------------------------------------------- ROUGE


def test_rouge_recall_hand() -> None:
    scores = tm.rouge_recall("William Shakespeare", "It was written by William Shakespeare.")
    assert scores["rougeL_recall"] == 1.0
    assert scores["rouge1_recall"] == 1.0
    assert scores["rougeL_f1"] == pytest.approx(2 * (2 / 6) / (1 + 2 / 6))
    # stemming: "writes" and "wrote"/"writing" -> "write"/"writ"
    assert tm.rouge_recall("she writes books", "she writing book")["rouge1_recall"] == 1.0
    assert tm.rouge_recall("Paris", "London")["rougeL_recall"] == 0.0


@pytest.mark.parametrize("name", list(LOGS))
def test_rouge_matches_every_logged_sample(name: str) -> None:
    log = _load(name)
    keys = [key for key in log if key.endswith("_Q_A_ROUGE")]
    assert sorted(keys) == ["forget_Q_A_ROUGE", "ra_Q_A_ROUGE", "retain_Q_A_ROUGE", "wf_Q_A_ROUGE"]
    for key in keys:
        samples = _by_index(log, key)
        mismatched = []
        for idx, sample in samples.items():
            scores = tm.rouge_recall(sample["ground_truth"], sample["generation"])
            logged = {k: sample[k] for k in ("rouge1_recall", "rougeL_f1", "rougeL_recall")}
            if scores != logged:
                mismatched.append(idx)
        assert not mismatched, f"{key}: {len(mismatched)} of {len(samples)} samples differ"


# --------------------------------------------------------------------------- ES, EM


def test_extraction_strength_hand() -> None:
    y = [5, 6, 7, 8]
    assert tm.extraction_strength([5, 6, 7, 8], y) == 1.0  # whole answer: k = 0
    assert tm.extraction_strength([0, 6, 7, 8], y) == 0.75  # k = 1
    assert tm.extraction_strength([5, 0, 7, 8], y) == 0.5  # k = 2: the suffix after the miss
    assert tm.extraction_strength([5, 6, 0, 8], y) == 0.25  # k = 3
    # open-unlearning's loop stops at k = |y| - 1: a wrong last token still gives 1/|y|
    assert tm.extraction_strength([5, 6, 7, 0], y) == 0.25
    assert tm.extraction_strength([0, 0, 0, 0], y) == 0.25
    assert tm.extraction_strength([], []) == 0.0
    assert tm.extraction_strength(torch.tensor([0, 6, 7, 8]), torch.tensor(y)) == 0.75
    with pytest.raises(ValueError, match="label tokens"):
        tm.extraction_strength([1, 2], [1, 2, 3])


def test_exact_memorization_hand() -> None:
    y = [5, 6, 7, 8]
    assert tm.exact_memorization([5, 6, 7, 8], y) == 1.0
    assert tm.exact_memorization([0, 6, 0, 8], y) == 0.5
    assert tm.exact_memorization(np.array([0, 0, 0, 0]), np.array(y)) == 0.0
    assert tm.exact_memorization([], []) is None


def test_es_em_reproduce_logged_float_formats() -> None:
    # retain90 forget sample 0: 13 answer tokens, 7 right, ES = 1 - 12/13 (float64) and
    # EM = 7/13 in float32, exactly as logged.
    labels = np.arange(13)
    preds = labels.copy()
    preds[6:12] = -1  # wrong at 6..11, right at 0..5 and 12
    es = tm.extraction_strength(preds, labels)
    em = tm.exact_memorization(torch.from_numpy(preds), torch.from_numpy(labels))
    log = _load("retain90")
    assert es == _by_index(log, "extraction_strength")["0"]["score"] == 0.07692307692307687
    assert em == _by_index(log, "exact_memorization")["0"]["score"] == 0.5384615659713745
