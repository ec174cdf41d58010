"""Batched likelihood against plain one-sequence-at-a-time implementations written here.

The reference functions below share nothing with `unlearnlib.evaluation.likelihood` but the chat
encoding: each runs one unpadded sequence through the model and takes log-softmax in
float64, so any padding, masking, sorting, cache or position-id mistake in the batched code
shows up as a difference larger than 1e-5.
"""

from __future__ import annotations

import copy
import math
import zlib

import numpy as np
import pytest
import torch

from unlearnlib.data.formatting import encode_example
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.likelihood import (
    NonFiniteLossError,
    answer_probabilities,
    score_answers,
    score_perturbed_set,
    truth_ratios,
)
from unlearnlib.evaluation.mia import membership_scores
from unlearnlib.models.tiny import build_model

TOL = 1e-5


@pytest.fixture(scope="module")
def model(tiny_tokenizer, noisy_tiny_model):
    return noisy_tiny_model(tiny_tokenizer, seed=1, noise_seed=0)


@pytest.fixture(scope="module")
def forget(tofu_dir):
    """Eight questions of TOFU-mini's forget10_perturbed."""
    return load_tofu("forget10_perturbed", "mini").select(range(8))


def _pairs(dataset) -> tuple[list[str], list[str]]:
    """Every (question, variant) of a perturbed set, plus very short and long answers."""
    questions, answers = [], []
    for row in dataset:
        for answer in [row["answer"], row["paraphrased_answer"], *row["perturbed_answer"]]:
            questions.append(row["question"])
            answers.append(answer)
    questions += [dataset[0]["question"], dataset[1]["question"]]
    answers += ["Yes.", " ".join([dataset[1]["answer"]] * 4)]
    return questions, answers


def reference_tokens(model, tokenizer, question, answer, mask_mode="lengths"):
    """Log-probs and argmax of the label tokens, one unpadded sequence, float64."""
    example = encode_example(tokenizer, question, answer)
    ids = torch.tensor([example.input_ids])
    mask = torch.ones_like(ids)
    if mask_mode == "open-unlearning":
        mask = (ids != tokenizer.eos_token_id).long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[0, :-1].double()
    labels = torch.tensor(example.labels[1:])
    scored = labels != -100
    logprobs = logits.log_softmax(-1)[scored].gather(-1, labels[scored, None])[:, 0]
    return logprobs.numpy(), logits[scored].argmax(-1).numpy(), labels[scored].numpy()


def reference_avg_loss(model, tokenizer, question, answer, mask_mode="lengths"):
    logprobs, _, _ = reference_tokens(model, tokenizer, question, answer, mask_mode)
    return -float(np.mean(logprobs))


def reference_truth_ratio(model, tokenizer, row):
    correct = math.exp(-reference_avg_loss(model, tokenizer, row["question"],
                                           row["paraphrased_answer"]))
    wrong_losses = [reference_avg_loss(model, tokenizer, row["question"], a)
                    for a in row["perturbed_answer"]]
    wrong = math.exp(-sum(wrong_losses) / len(wrong_losses))
    return wrong / (correct + 1e-10)


def reference_min_k(logprobs, k=0.4):
    """Min-K% over the answer tokens without the final end-of-turn token."""
    values = sorted(logprobs[:-1])
    count = max(1, int(len(values) * k))
    return -sum(values[:count]) / count


@pytest.mark.parametrize("mask_mode", ["lengths", "open-unlearning"])
@pytest.mark.parametrize("share_prompts", [False, True])
def test_batched_scores_match_one_sequence_at_a_time(model, tiny_tokenizer, forget, mask_mode,
                                                     share_prompts):
    questions, answers = _pairs(forget)
    scores = score_answers(model, tiny_tokenizer, questions, answers, batch_size=5,
                           mask_mode=mask_mode, share_prompts=share_prompts)
    lengths = set()
    for i, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        logprobs, argmax, labels = reference_tokens(model, tiny_tokenizer, question, answer,
                                                    mask_mode)
        lengths.add(len(labels))
        np.testing.assert_allclose(scores.token_logprobs[i], logprobs, atol=TOL, rtol=0)
        np.testing.assert_array_equal(scores.label_ids[i], labels)
        np.testing.assert_array_equal(scores.argmax_ids[i], argmax)
        assert scores.avg_loss[i] == pytest.approx(-np.mean(logprobs), abs=TOL)
        assert scores.sum_logprob[i] == pytest.approx(np.sum(logprobs), abs=10 * TOL)
        assert scores.num_tokens[i] == len(labels)
    assert len(lengths) > 5  # mixed answer lengths, so padding really happens


def test_the_two_masks_give_different_numbers(model, tiny_tokenizer, forget):
    questions, answers = _pairs(forget)
    lengths = score_answers(model, tiny_tokenizer, questions, answers, mask_mode="lengths")
    ou = score_answers(model, tiny_tokenizer, questions, answers, mask_mode="open-unlearning")
    assert np.max(np.abs(lengths.avg_loss - ou.avg_loss)) > 1e-3


def test_answer_probabilities_and_truth_ratios(model, tiny_tokenizer, forget):
    probs = answer_probabilities(model, tiny_tokenizer, forget, batch_size=3)
    expected = [math.exp(-reference_avg_loss(model, tiny_tokenizer, r["question"], r["answer"]))
                for r in forget]
    np.testing.assert_allclose(probs, expected, rtol=TOL)
    ratios = truth_ratios(model, tiny_tokenizer, forget, batch_size=4)
    np.testing.assert_allclose(ratios, [reference_truth_ratio(model, tiny_tokenizer, r)
                                        for r in forget], rtol=TOL)
    assert np.ptp(ratios) > 0.01  # the weights are non-trivial: the ratios differ


def test_perturbed_set_without_paraphrase_uses_the_answer(model, tiny_tokenizer):
    world = load_tofu("world_facts_perturbed", "mini").select(range(5))
    scores = score_perturbed_set(model, tiny_tokenizer, world, batch_size=7)
    assert scores.paraphrased is None and scores.num_perturbed == 3
    for j, row in enumerate(world):
        correct = reference_avg_loss(model, tiny_tokenizer, row["question"], row["answer"])
        wrong = [reference_avg_loss(model, tiny_tokenizer, row["question"], a)
                 for a in row["perturbed_answer"]]
        assert scores.answer.avg_loss[j] == pytest.approx(correct, abs=TOL)
        np.testing.assert_allclose(scores.perturbed_avg_loss[j], wrong, atol=TOL)
        expected = math.exp(-np.mean(wrong)) / (math.exp(-correct) + 1e-10)
        assert scores.truth_ratio()[j] == pytest.approx(expected, rel=TOL)


def test_membership_scores_match_plain_definitions(model, tiny_tokenizer, forget):
    questions, answers = _pairs(forget)
    scores = score_answers(model, tiny_tokenizer, questions, answers, batch_size=6)
    mia = membership_scores(scores, tiny_tokenizer)
    for i, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        logprobs, _, _ = reference_tokens(model, tiny_tokenizer, question, answer)
        loss = -float(np.mean(logprobs))
        assert mia["mia_loss"][i] == pytest.approx(loss, abs=TOL)
        assert mia["mia_min_k"][i] == pytest.approx(reference_min_k(logprobs), abs=TOL)
        # The tiny tokenizer decodes without clean-up: the label text is the stripped answer.
        text = answer.strip()
        assert mia["mia_zlib"][i] == pytest.approx(loss / len(zlib.compress(text.encode())),
                                                   abs=TOL)


def test_bf16_model_is_scored_in_float32(model, tiny_tokenizer, forget):
    half = copy.deepcopy(model).to(torch.bfloat16)
    questions, answers = _pairs(forget)
    scores = score_answers(half, tiny_tokenizer, questions, answers, batch_size=8)
    full = score_answers(model, tiny_tokenizer, questions, answers, batch_size=8)
    assert scores.token_logprobs[0].dtype == np.float32
    np.testing.assert_allclose(scores.avg_loss, full.avg_loss, atol=0.1)


def test_training_mode_is_restored_and_no_graph_is_kept(model, tiny_tokenizer, forget):
    model.train()
    try:
        scores = score_answers(model, tiny_tokenizer, forget["question"], forget["answer"])
        assert model.training
    finally:
        model.eval()
    assert all(np.isfinite(scores.avg_loss))


def test_empty_split_is_an_error(model, tiny_tokenizer):
    with pytest.raises(ValueError, match="empty"):
        score_answers(model, tiny_tokenizer, [], [], label="forget10_perturbed")


def test_nan_loss_names_the_sample(tiny_tokenizer, forget):
    broken = build_model(tiny_tokenizer, seed=2).eval()
    with torch.no_grad():
        broken.model.layers[0].mlp.down_proj.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"forget10_perturbed sample (\d+)") as error:
        score_answers(broken, tiny_tokenizer, forget["question"], forget["answer"],
                      label="forget10_perturbed", sample_ids=list(range(len(forget))))
    index = int(error.value.args[0].split("sample ")[1].split()[0])
    assert repr(forget[index]["question"]) in str(error.value)


def test_tokenizer_without_chat_template_is_an_error(model, tiny_tokenizer, forget):
    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        answer_probabilities(model, plain, forget)
