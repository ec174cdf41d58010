"""The real Llama-3 tokenizer built offline: its ids, and the course's prompts on real TOFU
decoded exactly as the published Llama-3.2-1B logs hold them."""

from __future__ import annotations

import pytest
from llama_models.llama3.tokenizer import Tokenizer as MetaTokenizer

from unlearnlib.data.formatting import encode_examples, encode_prompt, render_chat
from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.eval_logs import load_eval_log
from unlearnlib.evaluation.generation import gold_text
from unlearnlib.models.tiny import LLAMA3_SPLIT_PATTERN

SPECIAL_IDS = {
    "<|begin_of_text|>": 128000,
    "<|end_of_text|>": 128001,
    "<|start_header_id|>": 128006,
    "<|end_header_id|>": 128007,
    "<|eom_id|>": 128008,
    "<|eot_id|>": 128009,
    "<|reserved_special_token_245|>": 128255,
}
#: Ids every Llama-3 tokenizer gives these strings (no special tokens added).
PLAIN_IDS = {
    "Hello world": [9906, 1917],
    "system": [9125],
    "user": [882],
    "assistant": [78191],
    "\n\n": [271],
    "Cutting Knowledge Date: December 2023\n": [38766, 1303, 33025, 2696, 25, 6790, 220, 2366,
                                               18, 198],
}


@pytest.fixture(scope="module")
def forget10(tofu_dir):
    return load_tofu("forget10", tofu_dir)


@pytest.fixture(scope="module")
def published_forget10(tofu_dir):
    """The published full model's forget10 generations: input and ground truth per row."""
    log = load_eval_log(tofu_dir / "eval_logs" / "tofu_Llama-3.2-1B-Instruct_full"
                        / "evals_forget10")
    return log["forget_Q_A_ROUGE"]["value_by_index"]


def test_special_tokens_sit_at_their_real_ids(llama3_tokenizer):
    assert len(llama3_tokenizer) == 128256
    assert llama3_tokenizer.convert_tokens_to_ids(list(SPECIAL_IDS)) == list(SPECIAL_IDS.values())
    assert llama3_tokenizer.bos_token_id == 128000
    assert llama3_tokenizer.eos_token_id == llama3_tokenizer.pad_token_id == 128009
    specials = list(range(128000, 128256))
    assert llama3_tokenizer.decode(specials, skip_special_tokens=True) == ""
    assert llama3_tokenizer.decode(specials[:2]) == "<|begin_of_text|><|end_of_text|>"


def test_plain_strings_get_the_llama3_ids(llama3_tokenizer):
    for text, ids in PLAIN_IDS.items():
        assert llama3_tokenizer(text, add_special_tokens=False)["input_ids"] == ids, text
    assert llama3_tokenizer("Hello world")["input_ids"] == [128000, 9906, 1917]  # bos, as the Hub


def test_the_tiny_tokenizer_splits_text_as_llama3_does():
    assert MetaTokenizer.pat_str == LLAMA3_SPLIT_PATTERN


def test_every_forget10_chat_tokenises_as_metas_tiktoken(llama3_tokenizer, forget10):
    meta = MetaTokenizer.get_instance()
    for row in forget10:
        text = render_chat(llama3_tokenizer, row["question"], row["answer"])
        ours = llama3_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ours == meta.encode(text, bos=False, eos=False, allowed_special="all")


def test_the_chat_starts_with_the_llama32_system_block(llama3_tokenizer):
    ids = encode_prompt(llama3_tokenizer, "Who?")
    assert ids[:5] == [128000, 128006, 9125, 128007, 271]
    assert ids[-4:] == [128006, 78191, 128007, 271]  # ends with the assistant header
    assert ids.count(128009) == 2  # the system and user turns end with <|eot_id|>


def test_forget10_prompts_decode_as_the_published_log_inputs(llama3_tokenizer, forget10,
                                                             published_forget10):
    assert len(published_forget10) == len(forget10) == 400
    for index, row in enumerate(forget10):
        ids = encode_prompt(llama3_tokenizer, row["question"])
        decoded = llama3_tokenizer.decode(ids, skip_special_tokens=True)
        assert decoded == published_forget10[str(index)]["input"], index


def test_forget10_gold_answers_decode_as_the_published_ground_truth(llama3_tokenizer, forget10,
                                                                    published_forget10):
    for index, row in enumerate(forget10):
        gold = gold_text(llama3_tokenizer, row["question"], row["answer"])
        assert gold == published_forget10[str(index)]["ground_truth"], index


def test_the_loss_mask_covers_the_answer_and_its_eot(llama3_tokenizer, forget10):
    questions, answers = list(forget10["question"]), list(forget10["answer"])
    for question, example in zip(questions, encode_examples(llama3_tokenizer, questions, answers),
                                 strict=True):
        prompt = encode_prompt(llama3_tokenizer, question)
        assert example.input_ids[:example.prompt_length] == prompt
        assert example.labels[:example.prompt_length] == [-100] * len(prompt)
        assert example.labels[example.prompt_length:] == example.input_ids[len(prompt):]
        assert example.input_ids[-1] == 128009
