import copy

import pytest
import torch

from unlearnlib.data.formatting import (
    IGNORE_INDEX,
    ChatCollator,
    encode_example,
    generation_batch,
    render_chat,
)
from unlearnlib.data.tofu import load_tofu

# The Llama-3.2-Instruct chat of one TOFU row as open-unlearning renders it, verbatim.
LLAMA32_FORMAT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
    "December 2023\nToday Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{question}<|eot_id|><|start_header_id|>"
    "assistant<|end_header_id|>\n\n{answer}<|eot_id|>"
)


@pytest.fixture(scope="module")
def real_rows(tofu_dir):
    rows = list(load_tofu("forget10_perturbed", tofu_dir).select(range(10)))
    rows += list(load_tofu("retain_perturbed", tofu_dir).select(range(5)))
    rows += list(load_tofu("world_facts_perturbed", tofu_dir).select(range(5)))
    return rows


def test_rendered_text_is_llama32_format(tiny_tokenizer, real_rows):
    for row in real_rows:
        expected = LLAMA32_FORMAT.format(question=row["question"], answer=row["answer"])
        assert render_chat(tiny_tokenizer, row["question"], row["answer"]) == expected
        prompt = render_chat(tiny_tokenizer, row["question"])
        assert expected.startswith(prompt)
        assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_loss_mask_token_by_token(tiny_tokenizer, real_rows):
    tok = tiny_tokenizer
    for row in real_rows:
        example = encode_example(tok, row["question"], row["answer"])
        full_text = LLAMA32_FORMAT.format(question=row["question"], answer=row["answer"])
        assert example.input_ids == tok(full_text, add_special_tokens=False)["input_ids"]
        prompt_ids = tok(render_chat(tok, row["question"]), add_special_tokens=False)["input_ids"]
        assert example.prompt_length == len(prompt_ids)
        assert example.input_ids[: len(prompt_ids)] == prompt_ids
        for position, (token, label) in enumerate(zip(example.input_ids, example.labels,
                                                      strict=True)):
            expected = IGNORE_INDEX if position < len(prompt_ids) else token
            assert label == expected, f"position {position}"
        answer_ids = example.input_ids[len(prompt_ids):]
        assert tok.decode(answer_ids) == row["answer"] + "<|eot_id|>"
        assert answer_ids[-1] == tok.eos_token_id == tok.convert_tokens_to_ids("<|eot_id|>")
        assert example.input_ids[0] == tok.convert_tokens_to_ids("<|begin_of_text|>")
        assert example.input_ids.count(tok.eos_token_id) == 3


def test_collator_pads_right_with_length_mask(tiny_tokenizer, real_rows):
    examples = [encode_example(tiny_tokenizer, r["question"], r["answer"]) for r in real_rows[:4]]
    batch = ChatCollator(tiny_tokenizer)(examples)
    eos = tiny_tokenizer.eos_token_id
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        assert batch["input_ids"][row, :n].tolist() == example.input_ids
        padding = batch["input_ids"].shape[1] - n
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * padding
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        assert (batch["input_ids"][row, n:] == eos).all()  # pad = eos
    # the course's mask keeps the in-sequence end-of-turn tokens visible
    assert (batch["attention_mask"][batch["input_ids"] == eos].sum()) >= 3 * len(examples)


def test_open_unlearning_mask_hides_every_eot(tiny_tokenizer, real_rows):
    examples = [encode_example(tiny_tokenizer, r["question"], r["answer"]) for r in real_rows[:4]]
    batch = ChatCollator(tiny_tokenizer, mask_mode="open-unlearning")(examples)
    is_eos = batch["input_ids"] == tiny_tokenizer.eos_token_id
    assert (batch["attention_mask"][is_eos] == 0).all()
    assert (batch["attention_mask"][~is_eos] == 1).all()
    with pytest.raises(ValueError, match="mask_mode"):
        ChatCollator(tiny_tokenizer, mask_mode="eos")


def test_generation_batch_pads_left(tiny_tokenizer, real_rows):
    questions = [r["question"] for r in real_rows[:5]]
    batch = generation_batch(tiny_tokenizer, questions)
    header_end = tiny_tokenizer("<|end_header_id|>\n\n", add_special_tokens=False)["input_ids"]
    for row, question in enumerate(questions):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        assert tiny_tokenizer.decode(ids) == render_chat(tiny_tokenizer, question)
        assert ids[-len(header_end):] == header_end
    assert batch["attention_mask"][:, -1].all()  # every prompt ends at the right edge
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # mixed lengths, so the left padding is exercised
    gap = int(lengths.max() - lengths.min())
    assert torch.equal(batch["attention_mask"][lengths.argmin(), :gap],
                       torch.zeros(gap, dtype=torch.long))


def test_tokenizer_without_chat_template_is_refused(tiny_tokenizer):
    bare = copy.deepcopy(tiny_tokenizer)
    bare.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        encode_example(bare, "Who?", "Me.")


def test_prompt_that_is_not_a_prefix_is_refused(tiny_tokenizer):
    odd = copy.deepcopy(tiny_tokenizer)
    odd.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<|eot_id|>{% endif %}"
    )
    with pytest.raises(ValueError, match="not a prefix"):
        encode_example(odd, "Who?", "Me.")
