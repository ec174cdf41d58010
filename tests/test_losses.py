"""The unlearning objectives: values, the NPO gradient identity, agreement with the evaluator."""

import math

import pytest
import torch
from shared import SMALL

from unlearnlib.data.formatting import ChatCollator, encode_dataset
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.likelihood import score_answers
from unlearnlib.models.tiny import build_model
from unlearnlib.train.losses import (
    answer_lengths,
    answer_logits,
    gradient_ascent_loss,
    nll_loss,
    npo_loss,
    sequence_log_prob,
    simnpo_loss,
)


@pytest.fixture(scope="module")
def rows():
    return load_tofu("forget10", "mini").select(range(4))


@pytest.fixture(scope="module")
def batch(tiny_tokenizer, rows):
    return ChatCollator(tiny_tokenizer)(list(encode_dataset(rows, tiny_tokenizer)))


@pytest.fixture()
def model(tiny_tokenizer):
    return build_model(tiny_tokenizer, SMALL, seed=1).double()


def _logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _grad(model, loss):
    model.zero_grad()
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_sequence_log_prob_is_the_sum_over_answer_tokens(model, batch):
    with torch.no_grad():
        logits = _logits(model, batch)
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    expected = (picked * mask).sum(-1)
    assert torch.allclose(sequence_log_prob(logits, batch["labels"]), expected)
    assert torch.equal(answer_lengths(batch["labels"]), mask.sum(-1))
    # NLL is the token mean over the whole batch, as transformers' own loss.
    hf_loss = model(**batch).loss
    assert nll_loss(logits, batch["labels"]).item() == pytest.approx(hf_loss.item(), rel=1e-6)


def test_sequence_log_prob_agrees_with_the_evaluator(tiny_tokenizer, model, rows, batch):
    """Training and evaluation compute log pi(y|x) the same way (same tokens, same mask)."""
    with torch.no_grad():
        ours = sequence_log_prob(_logits(model.float(), batch), batch["labels"])
    scores = score_answers(model, tiny_tokenizer, list(rows["question"]), list(rows["answer"]))
    assert torch.allclose(ours.double(), torch.as_tensor(scores.sum_logprob), atol=1e-3)


def test_npo_loss_values():
    log_pi = torch.tensor([-5.0, -20.0])
    beta = 0.1
    assert npo_loss(log_pi, log_pi, beta).item() == pytest.approx(2 / beta * math.log(2))
    # (2/beta) mean log(1 + (pi/pi_ref)^beta): the equivalent closed form.
    ref = torch.tensor([-3.0, -30.0])
    closed = (2 / beta) * torch.log1p(torch.exp(beta * (log_pi - ref))).mean()
    assert npo_loss(log_pi, ref, beta).item() == pytest.approx(closed.item())
    # Lowering pi lowers the loss: minimising it pushes the forget answers down.
    assert npo_loss(log_pi - 10, ref, beta) < npo_loss(log_pi, ref, beta)


def test_npo_gradient_is_the_weighted_log_likelihood_gradient(model, batch):
    """grad L_NPO = mean_i w_i grad log pi_i with w_i = 2 pi^b / (pi^b + pi_ref^b) (per sample)."""
    beta = 0.5
    with torch.no_grad():
        log_pi_ref = sequence_log_prob(_logits(model, batch), batch["labels"])
        log_pi_ref = log_pi_ref + torch.tensor([-4.0, -1.0, 2.0, 6.0])  # weights far from 1
    log_pi = sequence_log_prob(_logits(model, batch), batch["labels"])
    npo_grad = _grad(model, npo_loss(log_pi, log_pi_ref, beta))

    pi_b, ref_b = torch.exp(beta * log_pi.detach()), torch.exp(beta * log_pi_ref)
    weights = 2 * pi_b / (pi_b + ref_b)
    assert weights.min() < 0.2 and weights.max() > 1.5
    expected = torch.zeros_like(npo_grad)
    for i in range(len(weights)):
        single = {k: v[i:i + 1] for k, v in batch.items()}
        log_pi_i = sequence_log_prob(_logits(model, single), single["labels"])[0]
        expected += weights[i] * _grad(model, log_pi_i) / len(weights)
    # Double precision, except the attention softmax (float32 in transformers): ~1e-7 noise.
    torch.testing.assert_close(npo_grad, expected, rtol=1e-5, atol=1e-6)


def test_npo_becomes_gradient_ascent_as_beta_goes_to_zero(model, batch):
    """beta -> 0: every weight -> 1, so NPO's gradient is GA's on the summed log-likelihood."""
    with torch.no_grad():
        log_pi_ref = sequence_log_prob(_logits(model, batch), batch["labels"]) + 5.0
    log_pi = sequence_log_prob(_logits(model, batch), batch["labels"])
    npo_grad = _grad(model, npo_loss(log_pi, log_pi_ref, beta=1e-7))
    log_pi = sequence_log_prob(_logits(model, batch), batch["labels"])
    ga_grad = _grad(model, log_pi.mean())  # = grad of -mean_i NLL_i (summed over tokens)
    torch.testing.assert_close(npo_grad, ga_grad, rtol=1e-5, atol=1e-6)
    log_pi = sequence_log_prob(_logits(model, batch), batch["labels"])
    large_beta_grad = _grad(model, npo_loss(log_pi, log_pi_ref, beta=2.0))
    assert not torch.allclose(large_beta_grad, ga_grad, rtol=1e-2, atol=1e-3)


def test_gradient_ascent_and_simnpo_values():
    assert gradient_ascent_loss(torch.tensor(2.5)).item() == -2.5
    log_pi = torch.tensor([-10.0, -40.0])
    lengths = torch.tensor([5, 20])
    beta, delta = 4.5, 0.5
    average_nll = torch.tensor([2.0, 2.0])
    expected = -(2 / beta) * torch.nn.functional.logsigmoid(beta * (average_nll - delta)).mean()
    assert simnpo_loss(log_pi, lengths, beta, delta).item() == pytest.approx(expected.item())
    # Length-normalised: the same per-token likelihood gives the same loss at any length.
    assert simnpo_loss(torch.tensor([-10.0]), torch.tensor([5])).item() == pytest.approx(
        simnpo_loss(torch.tensor([-40.0]), torch.tensor([20])).item())


def test_answer_logits_skip_the_prompt_and_change_no_loss_or_gradient(model, batch):
    logits, labels = answer_logits(model, batch)
    first_answer = int((batch["labels"] != -100).any(dim=0).nonzero()[0])
    assert logits.shape[1] == labels.shape[1] == batch["labels"].shape[1] - first_answer + 1
    assert (labels[:, 0] == -100).all()  # the kept window starts one token before an answer
    full_logits = _logits(model, batch)
    assert torch.allclose(sequence_log_prob(logits, labels),
                          sequence_log_prob(full_logits, batch["labels"]))
    grad = _grad(model, nll_loss(logits, labels))
    reference = _grad(model, model(**batch).loss)  # transformers' own loss on every position
    assert torch.allclose(grad, reference)
