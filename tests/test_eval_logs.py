"""Reading, writing and re-summarising open-unlearning evaluation logs.

The published logs are read by path from ../shared/tofu/eval_logs beside the checkout.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from shared import LOG_ROOT

from unlearnlib.cli import summarize_command
from unlearnlib.evaluation import eval_logs
from unlearnlib.evaluation.eval_logs import (
    SETTINGS_KEY,
    load_eval_log,
    recompute_metrics,
    summarize_eval_log,
    write_eval_log,
)

FULL = LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_full"
LOGS = {
    "full_forget01": FULL / "evals_forget01",
    "full_forget05": FULL / "evals_forget05",
    "full_forget10": FULL / "evals_forget10",
    "retain99": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain99",
    "retain95": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain95",
    "retain90": LOG_ROOT / "tofu_Llama-3.2-1B-Instruct_retain90",
}
#: The retain model each full-model log's forget quality and privleak were computed against.
RETAIN_FOR = {"full_forget01": "retain99", "full_forget05": "retain95", "full_forget10": "retain90"}


@cache
def _eval(name: str) -> dict[str, Any]:
    return load_eval_log(LOGS[name] / "TOFU_EVAL.json")


@cache
def _summary(name: str) -> dict[str, float]:
    return json.loads((LOGS[name] / "TOFU_SUMMARY.json").read_text(encoding="utf-8"))


def _poisoned(log: dict[str, Any]) -> dict[str, Any]:
    """A copy whose every logged aggregate is wrong, so only per-sample values can help."""
    out = copy.deepcopy(log)
    for entry in out.values():
        if isinstance(entry, dict):
            for key in ("agg_value", "auc"):
                if key in entry:
                    entry[key] = -1.0
            for side in ("forget", "holdout"):
                if isinstance(entry.get(side), dict):
                    entry[side]["agg_value"] = -1.0
    return out


# --------------------------------------------------------------------------- loading


def test_load_eval_log_file_and_folder() -> None:
    by_file = load_eval_log(LOGS["retain90"] / "TOFU_EVAL.json")
    by_folder = load_eval_log(str(LOGS["retain90"]))
    assert by_file.keys() == by_folder.keys()
    assert "forget_truth_ratio" in by_file


def test_load_eval_log_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "TOFU_EVAL.json"
    with pytest.raises(FileNotFoundError, match="nope"):
        load_eval_log(missing)
    with pytest.raises(FileNotFoundError, match="TOFU_EVAL.json"):
        load_eval_log(tmp_path)  # a folder without a log
    bad = tmp_path / "broken.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json"):
        load_eval_log(bad)
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="list.json"):
        load_eval_log(listing)
    with pytest.raises(ValueError, match="TOFU_SUMMARY"):
        load_eval_log(LOGS["retain90"] / "TOFU_SUMMARY.json")


# --------------------------------------------------------------------------- recomputation


@pytest.mark.parametrize("name", list(LOGS))
def test_recompute_metrics_matches_every_logged_aggregate(name: str) -> None:
    log = _eval(name)
    recomputed = recompute_metrics(_poisoned(log))
    expected = {
        key: entry["agg_value"]
        for key, entry in log.items()
        if key not in ("forget_quality", "privleak")
    }
    assert recomputed.keys() == expected.keys()
    for key, value in expected.items():
        assert recomputed[key] == pytest.approx(value, rel=1e-9, abs=0), key


def test_recompute_metrics_rescore_rouge() -> None:
    log = _eval("full_forget01")
    rescored = recompute_metrics(log, rescore_rouge=True)
    for key in ("forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE"):
        assert rescored[key] == pytest.approx(log[key]["agg_value"], rel=1e-12)


@pytest.mark.parametrize("name", list(LOGS))
def test_summary_reproduces_published_summary(name: str) -> None:
    retain = _poisoned(_eval(RETAIN_FOR[name])) if name in RETAIN_FOR else None
    summary = summarize_eval_log(_poisoned(_eval(name)), retain)
    expected = _summary(name)
    assert list(summary) == list(expected) == sorted(expected)
    for key, value in expected.items():
        assert summary[key] == pytest.approx(value, rel=1e-9, abs=0), key


def test_headline_numbers() -> None:
    full = summarize_eval_log(_eval("full_forget10"), _eval("retain90"))
    retain = summarize_eval_log(_eval("retain90"))
    assert full["forget_quality"] == pytest.approx(3.9054713571083378e-22, rel=1e-9)
    assert f"{full['forget_quality']:.4g}" == "3.905e-22"
    assert full["model_utility"] == pytest.approx(0.5991534707368931, rel=1e-9)
    assert retain["model_utility"] == pytest.approx(0.5911246639353407, rel=1e-9)
    assert full["privleak"] == pytest.approx(-99.45739100654656, rel=1e-9)
    assert retain["privleak"] == pytest.approx(23.477499995304495, rel=1e-9)
    assert "forget_quality" not in retain


def test_a_course_log_summary_adds_forget_truth_ratio() -> None:
    """Logs this course writes are summarised with the current tofu.yaml's keys."""
    ours = copy.deepcopy(_eval("full_forget10"))
    ours[SETTINGS_KEY] = {"mask_mode": "open-unlearning"}
    summary = summarize_eval_log(_poisoned(ours), _eval("retain90"))
    assert list(summary) == sorted([*_summary("full_forget10"), "forget_truth_ratio"])
    assert summary["forget_truth_ratio"] == pytest.approx(
        ours["forget_truth_ratio"]["agg_value"], rel=1e-12)


def test_prob_mean_is_an_opt_in_extent_of_knowledge() -> None:
    import numpy as np

    log = _eval("full_forget10")
    assert eval_logs.PROB_MEAN_KEY not in summarize_eval_log(log)
    para = [s["avg_loss"] for s in log["forget_Q_A_PARA_Prob"]["value_by_index"].values()]
    pert = [np.mean(s["avg_loss"]) for s in log["forget_Q_A_PERT_Prob"]["value_by_index"].values()]
    correct, wrong = np.exp(-np.array(para)), np.exp(-np.array(pert))
    full = summarize_eval_log(log, prob_mean=True)[eval_logs.PROB_MEAN_KEY]
    assert full == pytest.approx(np.mean(correct / (correct + wrong + 1e-10)), rel=1e-12)
    retain = summarize_eval_log(_eval("retain90"), prob_mean=True)[eval_logs.PROB_MEAN_KEY]
    assert 0.5 < retain < full < 1  # the full model knows the forget facts better
    assert f"{full:.4f} {retain:.4f}" == "0.6850 0.5673"


def test_without_retain_log_privleak_uses_default_reference() -> None:
    summary = summarize_eval_log(_eval("full_forget10"))
    assert "forget_quality" not in summary
    auc = _eval("full_forget10")["mia_min_k"]["auc"]
    assert summary["privleak"] == pytest.approx(((1 - auc) - 0.5) / 0.5 * 100, rel=1e-9)


def test_mismatched_retain_log_raises() -> None:
    with pytest.raises(ValueError, match=r"200 forget questions .* 400"):
        summarize_eval_log(_eval("full_forget10"), _eval("retain95"))
    with pytest.raises(ValueError, match="forget"):
        summarize_eval_log(_eval("full_forget01"), _eval("retain90"))


def test_retain_log_with_another_mask_mode_raises() -> None:
    """Our default (length) mask against a published (open-unlearning mask) reference."""
    ours = copy.deepcopy(_eval("full_forget10"))
    ours[SETTINGS_KEY] = {"mask_mode": "lengths"}
    with pytest.raises(ValueError, match="mask_mode='open-unlearning'.*not comparable"):
        summarize_eval_log(ours, _eval("retain90"))


def test_same_count_different_questions_raises() -> None:
    # same split size and indices, but one forget answer differs between the two logs
    retain = copy.deepcopy(_eval("retain99"))
    model = copy.deepcopy(_eval("full_forget01"))
    model["forget_Q_A_ROUGE"]["value_by_index"]["3"]["ground_truth"] = "something else"
    with pytest.raises(ValueError, match="forget question 3 differs"):
        summarize_eval_log(model, retain)


def test_retain_log_without_min_k_raises() -> None:
    retain = copy.deepcopy(_eval("retain90"))
    del retain["mia_min_k"]
    with pytest.raises(ValueError, match="mia_min_k"):
        summarize_eval_log(_eval("full_forget10"), retain)


# --------------------------------------------------------------------------- writing


def test_write_eval_log_round_trip(tmp_path: Path) -> None:
    log = _eval("full_forget01")
    summary = summarize_eval_log(log, _eval("retain99"))
    eval_path, summary_path = write_eval_log(tmp_path / "run", log, summary)
    assert eval_path.name == eval_logs.EVAL_FILENAME
    assert load_eval_log(tmp_path / "run") == log
    assert json.loads(summary_path.read_text(encoding="utf-8")) == _summary("full_forget01")
    # without a summary it is recomputed (no forget quality without a retain log)
    _, summary_path = write_eval_log(tmp_path / "again", log)
    written = json.loads(summary_path.read_text(encoding="utf-8"))
    assert "forget_quality" not in written
    assert written["model_utility"] == pytest.approx(_summary("full_forget01")["model_utility"])


def test_write_eval_log_accepts_numpy(tmp_path: Path) -> None:
    import numpy as np

    log = {
        "forget_Q_A_Prob": {
            "agg_value": np.float32(0.5),
            "value_by_index": {"0": {"prob": np.float64(0.5)}},
        }
    }
    eval_path, _ = write_eval_log(tmp_path, log, {"forget_Q_A_Prob": np.float64(0.5)})
    assert load_eval_log(eval_path)["forget_Q_A_Prob"]["value_by_index"]["0"]["prob"] == 0.5


# --------------------------------------------------------------------------- command line


def test_summarize_command_json() -> None:
    text = summarize_command(
        str(LOGS["full_forget10"] / "TOFU_EVAL.json"),
        str(LOGS["retain90"] / "TOFU_EVAL.json"),
        as_json=True,
    )
    parsed = json.loads(text)
    expected = _summary("full_forget10")
    assert list(parsed) == list(expected)
    for key, value in expected.items():
        assert parsed[key] == pytest.approx(value, rel=1e-9, abs=0), key


def test_summarize_command_table() -> None:
    text = summarize_command(str(LOGS["retain90"]), None, as_json=False)
    lines = text.splitlines()
    rows = lines[3:]
    assert [row.split()[0] for row in rows] == list(_summary("retain90"))
    value_columns = {row.index(row.split()[1], len(row.split()[0])) for row in rows}
    assert len(value_columns) == 1  # values aligned in one column
    assert "0.591125" in text  # model utility, 6 significant digits


def test_summarize_command_mismatch_names_both_files() -> None:
    with pytest.raises(ValueError, match="retain95"):
        summarize_command(str(LOGS["full_forget10"]), str(LOGS["retain95"]), as_json=True)


def test_published_logs_come_from_a_local_copy_of_the_hub_layout() -> None:
    retain = eval_logs.published_eval_log("open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90",
                                          "forget10", LOG_ROOT)
    assert retain == load_eval_log(LOGS["retain90"])
    full = eval_logs.published_eval_log("tofu_Llama-3.2-1B-Instruct_full", "forget05", LOG_ROOT)
    assert full == load_eval_log(FULL / "evals_forget05" / "TOFU_EVAL.json")
    with pytest.raises(FileNotFoundError, match="retain95"):
        eval_logs.published_eval_log("tofu_Llama-3.2-1B-Instruct_retain95x", "forget05",
                                     LOG_ROOT)


def test_a_published_log_the_hub_cannot_give_names_what_was_wanted() -> None:
    # The tests run offline (conftest), and nothing is cached for this name.
    with pytest.raises(OSError, match="open-unlearning/eval"):
        eval_logs.published_eval_log("no-such-model", "forget10")
