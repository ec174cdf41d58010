"""Generation under each mask mode equals a hand-written greedy loop fed the same attention
mask and the position ids that follow from it (open-unlearning's `generate`: cumsum - 1)."""

from __future__ import annotations

import pytest
import torch

from unlearnlib.data.formatting import generation_batch, pad_id
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.generation import decode_text, generate_answers

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MAX_NEW_TOKENS = 12


@pytest.fixture(scope="module")
def model(tiny_tokenizer, noisy_tiny_model):
    return noisy_tiny_model(tiny_tokenizer, seed=3, noise_seed=4)


@pytest.fixture(scope="module")
def questions():
    return list(load_tofu("forget10", "mini")["question"][:6])


def _cumsum_positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _reference(model, tokenizer, questions, mask_mode, position_mode=None) -> list[str]:
    """Greedy decoding without a cache: the whole sequence, its mask and the positions that
    follow from the `position_mode` mask (by default the same mask), recomputed each step."""
    batch = generation_batch(tokenizer, questions, mask_mode=mask_mode)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    counted = generation_batch(tokenizer, questions,
                               mask_mode=position_mode or mask_mode)["attention_mask"]
    width = ids.shape[1]
    with torch.inference_mode():
        for _ in range(MAX_NEW_TOKENS):
            logits = model(input_ids=ids, attention_mask=mask,
                           position_ids=_cumsum_positions(counted)).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
            mask, counted = (torch.cat([m, torch.ones_like(m[:, :1])], dim=1)
                             for m in (mask, counted))
    eot, answers = tokenizer.eos_token_id, []
    for row in ids[:, width:].tolist():
        answers.append(decode_text(tokenizer, row[:row.index(eot)] if eot in row else row).strip())
    return answers


def _generated(model, tokenizer, questions, mask_mode) -> list[str]:
    return generate_answers(model, tokenizer, questions, max_new_tokens=MAX_NEW_TOKENS,
                            batch_size=4, mask_mode=mask_mode)


def test_open_unlearning_mask_hides_every_eot_of_the_prompt(tiny_tokenizer, questions):
    lengths = generation_batch(tiny_tokenizer, questions)
    theirs = generation_batch(tiny_tokenizer, questions, mask_mode="open-unlearning")
    eot = lengths["input_ids"] == pad_id(tiny_tokenizer)
    hidden = (lengths["attention_mask"] == 1) & (theirs["attention_mask"] == 0)
    assert torch.equal(hidden, eot & (lengths["attention_mask"] == 1))
    assert hidden.sum(-1).tolist() == [2] * len(questions)  # the system and user turn ends
    # so every generated token sits 2 positions earlier than under the length mask
    last = _cumsum_positions(lengths["attention_mask"])[:, -1] - \
        _cumsum_positions(theirs["attention_mask"])[:, -1]
    assert last.tolist() == [2] * len(questions)


@pytest.mark.parametrize("mask_mode", ["lengths", "open-unlearning"])
def test_generation_equals_the_reference_loop(model, tiny_tokenizer, questions, mask_mode):
    assert _generated(model, tiny_tokenizer, questions, mask_mode) == \
        _reference(model, tiny_tokenizer, questions, mask_mode)


def test_open_unlearning_generations_differ_from_the_length_masks(model, tiny_tokenizer,
                                                                   questions):
    ours = _generated(model, tiny_tokenizer, questions, "lengths")
    theirs = _generated(model, tiny_tokenizer, questions, "open-unlearning")
    assert ours != theirs
    # the positions matter, not only the mask: open-unlearning's mask with the positions of
    # the length mask (no shift) gives yet other answers
    unshifted = _reference(model, tiny_tokenizer, questions, "open-unlearning", "lengths")
    assert unshifted != theirs


def test_an_unknown_mask_mode_is_refused(model, tiny_tokenizer, questions):
    with pytest.raises(ValueError, match="mask_mode must be"):
        _generated(model, tiny_tokenizer, questions, "eot")
