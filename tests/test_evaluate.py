"""One TOFU evaluation run: layout, exact re-summarising, references, mask modes, bad input."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from unlearnlib.cli import main, summarize_command
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation import eval_logs
from unlearnlib.evaluation.eval_logs import SETTINGS_KEY, log_mask_mode
from unlearnlib.evaluation.evaluate import evaluate_model
from unlearnlib.evaluation.generation import generate_answers
from unlearnlib.evaluation.likelihood import NonFiniteLossError
from unlearnlib.models.loading import save_model
from unlearnlib.models.tiny import build_model
from unlearnlib.paths import shipped_tofu_mini_dir

SAMPLES = 6
FAST = {"max_samples": SAMPLES, "max_new_tokens": 4, "progress": False}
#: What open-unlearning logs and this course cannot compute honestly without a reference
#: model or gradients.
NOT_COMPUTED = {"mia_gradnorm", "mia_reference", "mia_min_k_plus_plus"}


@pytest.fixture(scope="module")
def model(tiny_tokenizer, noisy_tiny_model):
    return noisy_tiny_model(tiny_tokenizer, seed=3, noise_seed=1)


@pytest.fixture(scope="module")
def evaluation(model, tiny_tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return evaluate_model(model, tiny_tokenizer, "tiny", out_dir=out, **FAST)


def test_log_has_open_unlearnings_layout(evaluation, tofu_dir):
    published = eval_logs.load_eval_log(
        tofu_dir / "eval_logs" / "tofu_Llama-3.2-1B-Instruct_full" / "evals_forget10")
    log = evaluation.eval_log
    assert set(log) - {SETTINGS_KEY} == set(published) - NOT_COMPUTED
    for key, entry in published.items():
        if key in NOT_COMPUTED:
            continue
        ours = log[key]
        assert set(ours) == set(entry), key
        if "value_by_index" in entry:
            assert list(ours["value_by_index"]) == [str(i) for i in range(len(
                ours["value_by_index"]))]
            assert set(ours["value_by_index"]["0"]) == set(entry["value_by_index"]["0"]), key
    assert len(log["forget_Q_A_PERT_Prob"]["value_by_index"]["0"]["prob"]) == 5
    assert len(log["ra_Q_A_PERT_Prob"]["value_by_index"]["0"]["avg_loss"]) == 3
    assert set(log["mia_min_k"]) == {"forget", "holdout", "auc", "agg_value"}
    assert len(log["mia_min_k"]["holdout"]["value_by_index"]) == SAMPLES
    assert log[SETTINGS_KEY]["mask_mode"] == "lengths"


def test_written_log_resummarises_exactly(evaluation):
    eval_path, summary_path = evaluation.paths["eval_log"], evaluation.paths["summary"]
    log = eval_logs.load_eval_log(eval_path)
    assert eval_logs.summarize_eval_log(log) == evaluation.summary
    assert json.loads(summary_path.read_text()) == evaluation.summary
    assert json.loads(summarize_command(str(eval_path), as_json=True)) == \
        evaluation.summary
    recomputed = eval_logs.recompute_metrics(log, rescore_rouge=True)
    for key, entry in log.items():
        if isinstance(entry, dict) and "value_by_index" in entry:
            assert entry["agg_value"] == recomputed[key], key
    expected = {"exact_memorization", "extraction_strength", "forget_Q_A_Prob",
                "forget_Q_A_ROUGE", "forget_truth_ratio", "mia_loss", "mia_min_k", "mia_zlib",
                "model_utility", "privleak"}
    assert set(evaluation.summary) == expected
    assert list(evaluation.frame()["metric"]) == sorted(expected)


def test_rouge_records_read_like_the_logs(evaluation):
    record = evaluation.eval_log["forget_Q_A_ROUGE"]["value_by_index"]["0"]
    assert record["input"].startswith("system\n\nCutting Knowledge Date")
    assert record["input"].endswith("assistant\n\n")
    assert record["ground_truth"] and "<|eot_id|>" not in record["generation"]


def test_reference_gives_forget_quality(model, tiny_tokenizer, evaluation):
    again = evaluate_model(model, tiny_tokenizer, "tiny", reference=evaluation.eval_log, **FAST)
    assert again.summary["forget_quality"] == pytest.approx(1.0)
    assert again.summary["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert again.eval_log["forget_quality"] == {"agg_value": again.summary["forget_quality"]}


def test_reference_with_other_questions_is_refused(model, tiny_tokenizer, evaluation):
    other = copy.deepcopy(evaluation.eval_log)
    other["forget_Q_A_ROUGE"]["value_by_index"]["2"]["ground_truth"] = "Somebody else."
    with pytest.raises(ValueError, match="forget question 2 .* does not match"):
        evaluate_model(model, tiny_tokenizer, "tiny", reference=other, **FAST)
    with pytest.raises(ValueError, match="scored 6 forget questions but .* has 100"):
        evaluate_model(model, tiny_tokenizer, "tiny", reference=evaluation.eval_log,
                       **{**FAST, "max_samples": None})


def test_mask_mode_mismatch_is_refused(model, tiny_tokenizer, evaluation, tofu_dir):
    with pytest.raises(ValueError, match="mask_mode='lengths'.*mask_mode='open-unlearning'"):
        evaluate_model(model, tiny_tokenizer, "tiny", reference=evaluation.eval_log,
                       mask_mode="open-unlearning", **FAST)
    published = tofu_dir / "eval_logs" / "tofu_Llama-3.2-1B-Instruct_retain90"
    assert log_mask_mode(eval_logs.load_eval_log(published)) == "open-unlearning"
    with pytest.raises(ValueError, match="mask_mode='open-unlearning'"):
        evaluate_model(model, tiny_tokenizer, "tiny", reference=published, **FAST)


def test_open_unlearning_mode_generates_under_its_mask(model, tiny_tokenizer):
    settings = {**FAST, "max_new_tokens": 10}
    log = evaluate_model(model, tiny_tokenizer, "tiny", mask_mode="open-unlearning",
                         **settings).eval_log
    questions = list(load_tofu("forget10_perturbed", "mini")["question"][:SAMPLES])
    generations = [row["generation"] for row in log["forget_Q_A_ROUGE"]["value_by_index"].values()]

    def answers(mask_mode):
        return generate_answers(model, tiny_tokenizer, questions, max_new_tokens=10,
                                mask_mode=mask_mode)

    assert generations == answers("open-unlearning") != answers("lengths")


def test_nan_loss_names_split_index_and_question(tiny_tokenizer):
    broken = build_model(tiny_tokenizer, seed=4).eval()
    with torch.no_grad():
        broken.model.embed_tokens.weight[:, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"forget10_perturbed sample \d+ \(question"):
        evaluate_model(broken, tiny_tokenizer, "tiny", **FAST)


def test_empty_split_is_refused(model, tiny_tokenizer, tmp_path):
    source = tmp_path / "tofu"
    shutil.copytree(shipped_tofu_mini_dir(), source)
    (source / "retain_perturbed.json").write_text("")
    with pytest.raises(ValueError, match="retain_perturbed.json has no rows"):
        evaluate_model(model, tiny_tokenizer, "tiny", source=source, **FAST)


def test_tokenizer_without_chat_template_is_refused(model, tiny_tokenizer):
    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        evaluate_model(model, plain, "tiny", **FAST)


def test_batched_generation_equals_one_at_a_time(model, tiny_tokenizer):
    """Left padding must not change greedy answers: prompts of very different lengths."""
    questions = ["Who wrote it?", "Why?", "Where was the author born, and in which year did "
                 "the author publish a first novel about the sea?"]
    batched = generate_answers(model, tiny_tokenizer, questions, max_new_tokens=6, batch_size=3)
    single = [generate_answers(model, tiny_tokenizer, [q], max_new_tokens=6)[0]
              for q in questions]
    assert batched == single
    assert all(batched)


def test_cli_eval_run(model, tiny_tokenizer, tmp_path, capsys):
    folder = save_model(model, tiny_tokenizer, tmp_path / "model")
    out = tmp_path / "out"
    code = main(["eval", "run", "--model", str(folder), "--out", str(out),
                 "--max-samples", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "model_utility" in printed and str(out / "TOFU_EVAL.json") in printed
    log = eval_logs.load_eval_log(out)
    assert len(log["forget_truth_ratio"]["value_by_index"]) == 3
    code = main(["eval", "run", "--model", str(folder), "--out", str(tmp_path / "o2"),
                 "--max-samples", "3", "--reference", str(out / "TOFU_EVAL.json"),
                 "--mask-mode", "open-unlearning"])
    assert code == 2
    assert "mask_mode" in capsys.readouterr().err
