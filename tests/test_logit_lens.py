"""Logit lens on the tiny Llama: last layer = the model's logits, padding-invariant, exact ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnlib.audit.logit_lens import key_span_first_tokens, lens_logits, logit_lens_ranks
from unlearnlib.data.formatting import encode_example, encode_prompt, pad_batch, pad_id
from unlearnlib.data.tofu import load_tofu


@pytest.fixture(scope="module")
def facts() -> list[dict]:
    mini = load_tofu("forget10", "mini")
    return [mini[i] for i in (0, 5, 28)]  # different lengths -> real left padding


@pytest.fixture(scope="module")
def prompts(tiny_tokenizer, facts) -> list[list[int]]:
    return [encode_prompt(tiny_tokenizer, f["question"]) for f in facts]


@pytest.fixture(scope="module")
def batch_logits(tiny_model, tiny_tokenizer, prompts) -> torch.Tensor:
    assert len({len(p) for p in prompts}) > 1
    ids, mask = pad_batch(prompts, pad_id(tiny_tokenizer), "left")
    return lens_logits(tiny_model, ids, mask)


def test_shape(tiny_model, batch_logits, prompts) -> None:
    n_layers = tiny_model.config.num_hidden_layers
    assert batch_logits.shape == (len(prompts), n_layers, tiny_model.config.vocab_size)
    assert batch_logits.dtype == torch.float32


def test_last_layer_is_the_models_own_output_and_padding_is_invisible(tiny_model, prompts,
                                                                       batch_logits) -> None:
    for row, prompt in enumerate(prompts):
        ids = torch.tensor([prompt])
        with torch.no_grad():
            own = tiny_model(ids).logits[0, -1]
        torch.testing.assert_close(batch_logits[row, -1], own, atol=1e-5, rtol=1e-5)
        alone = lens_logits(tiny_model, ids, torch.ones_like(ids))[0]
        torch.testing.assert_close(batch_logits[row], alone, atol=1e-5, rtol=1e-5)
    # intermediate layers are different readings, not copies of the output
    assert not torch.allclose(batch_logits[:, 0], batch_logits[:, -1], atol=1e-3)


def test_first_tokens_are_the_answer_start_and_mid_sentence_spellings(tiny_tokenizer,
                                                                      facts) -> None:
    for fact in facts:
        span = fact["key_span"]
        tokens = key_span_first_tokens(tiny_tokenizer, span)
        example = encode_example(tiny_tokenizer, fact["question"], span + " is the answer.")
        assert tokens[0] == example.input_ids[example.prompt_length]
        assert tokens[-1] == tiny_tokenizer(" " + span, add_special_tokens=False)["input_ids"][0]
        assert 1 <= len(tokens) <= 2
    with pytest.raises(ValueError, match="empty"):
        key_span_first_tokens(tiny_tokenizer, "  ")


def test_ranks_match_an_independent_sort(tiny_model, tiny_tokenizer, prompts, facts,
                                         batch_logits) -> None:
    spans = [f["key_span"] for f in facts]
    ranks = logit_lens_ranks(tiny_model, tiny_tokenizer, prompts, spans, batch_size=2)
    assert ranks.shape == batch_logits.shape[:2] and ranks.dtype.kind == "i"
    for row, span in enumerate(spans):
        tokens = key_span_first_tokens(tiny_tokenizer, span)
        for layer in range(ranks.shape[1]):
            order = torch.argsort(batch_logits[row, layer], descending=True, stable=True).tolist()
            assert ranks[row, layer] <= min(order.index(t) for t in tokens)
            values = batch_logits[row, layer]
            best = max(values[t] for t in tokens)
            assert ranks[row, layer] == int((values > best).sum())


def test_top_k_membership_on_a_constructed_span(tiny_model, tiny_tokenizer, prompts,
                                                batch_logits) -> None:
    # Build key spans from the lens itself: the best-ranked word token at layer 0 of prompt 0
    # (at position `rank` of an independent sort) is in the top rank + 1 and not the top rank;
    # the word the lens ranks last is in no layer's top 10.
    order = torch.argsort(batch_logits[0, 0], descending=True, stable=True).tolist()
    rank, span = next((r, tiny_tokenizer.decode([t]).strip()) for r, t in enumerate(order)
                      if tiny_tokenizer.decode([t]).strip().isalpha()
                      and t in key_span_first_tokens(tiny_tokenizer,
                                                     tiny_tokenizer.decode([t]).strip()))
    bottom_span = next(tiny_tokenizer.decode([t]).strip() for t in reversed(order)
                       if tiny_tokenizer.decode([t]).strip().isalpha())
    ranks = logit_lens_ranks(tiny_model, tiny_tokenizer, prompts[:1] * 2, [span, bottom_span])
    assert ranks[0, 0] == rank
    assert ranks[0, 0] < rank + 1 and not ranks[0, 0] < rank
    assert not (ranks[1] < 10).any()


def test_rejects_right_padding_and_mismatched_lengths(tiny_model, tiny_tokenizer,
                                                      prompts) -> None:
    ids, mask = pad_batch(prompts[:2], pad_id(tiny_tokenizer), "right")
    with pytest.raises(ValueError, match="LEFT"):
        lens_logits(tiny_model, ids, mask)
    with pytest.raises(ValueError, match="key spans"):
        logit_lens_ranks(tiny_model, tiny_tokenizer, prompts, ["a"])
    assert np.all(logit_lens_ranks(tiny_model, tiny_tokenizer, prompts[:1], ["Paris"]) >= 0)
