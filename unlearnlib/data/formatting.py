"""Chat prompts and loss masks exactly as open-unlearning builds them for Llama-3.2-Instruct.

A TOFU pair becomes the chat [system, user=question, assistant=answer] rendered by the
tokenizer's own chat template with the system prompt "You are a helpful assistant." and the
date string "10 Apr 2025". The prompt is the template applied to [system, user] with the
generation header; its tokens get label -100, so only the answer and the final end-of-turn
token carry loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from unlearnlib.checks import check_mask_mode

SYSTEM_PROMPT = "You are a helpful assistant."
DATE_STRING = "10 Apr 2025"
IGNORE_INDEX = -100

#: "lengths": attention covers every real token, padding only is masked (the course default).
#: "open-unlearning": mask = input_ids != pad_id, which also hides every in-sequence
#: <|eot_id|> because pad = eos; open-unlearning's published logs were computed this way.
#: The values are `checks.MASK_MODES` (a test keeps the two in step).
MaskMode = Literal["lengths", "open-unlearning"]


def chat_messages(question: str, answer: str | None = None,
                  system_prompt: str = SYSTEM_PROMPT) -> list[dict[str, str]]:
    """The [system, user, (assistant)] conversation for one TOFU question."""
    messages = [{"role": "system", "content": system_prompt},
                {"role": "user", "content": question}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _require_template(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"Tokenizer {type(tokenizer).__name__} ({tokenizer.name_or_path!r}) has no chat "
            "template. Use an instruction-tuned model's tokenizer (e.g. Llama-3.2-1B-Instruct) "
            "or unlearnlib.models.tiny.build_tokenizer()."
        )


def render_chat(tokenizer: PreTrainedTokenizerBase, question: str, answer: str | None = None,
                system_prompt: str = SYSTEM_PROMPT, date_string: str = DATE_STRING) -> str:
    """The chat as text; without an answer it ends with the assistant header (a prompt)."""
    _require_template(tokenizer)
    return tokenizer.apply_chat_template(
        chat_messages(question, answer, system_prompt), tokenize=False,
        add_generation_prompt=answer is None, date_string=date_string,
    )


def _chat_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]],
              generation_prompt: bool, date_string: str) -> list[int]:
    """Token ids of a rendered chat (the template carries its own special tokens)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=generation_prompt,
                                         date_string=date_string)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised QA pair: the full chat ids, labels (-100 over the prompt), prompt length."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int


def encode_example(tokenizer: PreTrainedTokenizerBase, question: str, answer: str,
                   system_prompt: str = SYSTEM_PROMPT, date_string: str = DATE_STRING,
                   max_length: int = 512) -> EncodedExample:
    """Tokenise a QA pair with TOFU's loss mask (the prompt's labels are -100).

    labels = [-100] * len(prompt) + chat_ids[len(prompt):]; an end-of-turn token is appended
    when the template did not end with one, as open-unlearning does.
    """
    _require_template(tokenizer)
    chat_ids = _chat_ids(tokenizer, chat_messages(question, answer, system_prompt), False,
                         date_string)
    prompt_ids = _chat_ids(tokenizer, chat_messages(question, None, system_prompt), True,
                           date_string)
    if chat_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError(
            "The tokenised prompt is not a prefix of the tokenised chat, so the loss mask "
            f"would be wrong (question: {question[:60]!r}). The tokenizer merges tokens across "
            "the assistant header; use one whose pre-tokenizer splits after newlines."
        )
    if chat_ids[-1] != tokenizer.eos_token_id:
        chat_ids.append(tokenizer.eos_token_id)
    chat_ids = chat_ids[:max_length]
    labels = [IGNORE_INDEX] * len(prompt_ids) + chat_ids[len(prompt_ids):]
    return EncodedExample(chat_ids, labels[:max_length], len(prompt_ids))


def encode_examples(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                  answers: Sequence[str], max_length: int = 512) -> list[EncodedExample]:
    """`encode_example` for many pairs in one batched tokenizer call (about 2x faster).

    Each distinct prompt is tokenised once. A pair that is not the simple case (prompt not a
    prefix, or too long) goes through `encode_example` itself, which explains or truncates.
    """
    prompts = {q: encode_prompt(tokenizer, q) for q in dict.fromkeys(questions)}
    texts = [render_chat(tokenizer, q, a) for q, a in zip(questions, answers, strict=True)]
    chats = tokenizer(texts, add_special_tokens=False)["input_ids"]
    encoded = []
    for question, answer, ids in zip(questions, answers, chats, strict=True):
        prompt = prompts[question]
        if ids[:len(prompt)] != prompt or len(ids) >= max_length:
            encoded.append(encode_example(tokenizer, question, answer, max_length=max_length))
            continue
        if ids[-1] != tokenizer.eos_token_id:
            ids = [*ids, tokenizer.eos_token_id]
        encoded.append(EncodedExample(ids, [IGNORE_INDEX] * len(prompt) + ids[len(prompt):],
                                      len(prompt)))
    return encoded


def encode_dataset(dataset: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
                   max_length: int = 512) -> datasets.Dataset:
    """Tokenise every (question, answer) row into input_ids and labels (prompt masked), in one
    batched call (`encode_examples`): the training data of the fine-tunes and unlearning."""
    encoded = encode_examples(tokenizer, dataset["question"], dataset["answer"], max_length)
    return datasets.Dataset.from_dict({
        "input_ids": [e.input_ids for e in encoded],
        "labels": [e.labels for e in encoded],
    })


def encode_prompt(tokenizer: PreTrainedTokenizerBase, question: str,
                  system_prompt: str = SYSTEM_PROMPT, date_string: str = DATE_STRING) -> list[int]:
    """Token ids of the generation prompt for a question (ends with the assistant header)."""
    _require_template(tokenizer)
    return _chat_ids(tokenizer, chat_messages(question, None, system_prompt), True, date_string)


def pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """Llama 3.2 has no pad token, so pad = eos (as open-unlearning does)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def pad_batch(sequences: Sequence[Sequence[int]], pad_value: int,
              side: Literal["right", "left"] = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ragged sequences into a tensor padded on `side`, with a 0/1 mask from lengths."""
    if not sequences:
        raise ValueError("Cannot pad an empty batch.")
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        ids[row, span] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def apply_mask_mode(input_ids: torch.Tensor, length_mask: torch.Tensor, pad_value: int,
                    mask_mode: MaskMode) -> torch.Tensor:
    """The attention mask of a padded batch under `mask_mode`.

    "lengths" keeps `length_mask` (padding only); "open-unlearning" is ``input_ids !=
    pad_value``, which with pad = eos also hides every in-sequence <|eot_id|>.
    """
    if check_mask_mode(mask_mode) == "lengths":
        return length_mask
    return (input_ids != pad_value).long()


class ChatCollator:
    """Batch `EncodedExample`s (or dicts with input_ids/labels) for training and likelihood.

    Pads right with pad = eos; padding labels are -100. The attention mask comes from the
    lengths (pad and eos share an id) unless `mask_mode="open-unlearning"` asks for its
    `input_ids != pad_id` mask.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, mask_mode: MaskMode = "lengths"):
        check_mask_mode(mask_mode)
        self.pad_id = pad_id(tokenizer)
        self.mask_mode = mask_mode

    def __call__(self, examples: Sequence[EncodedExample | dict]) -> dict[str, torch.Tensor]:
        ids = [_field(e, "input_ids") for e in examples]
        input_ids, attention_mask = pad_batch(ids, self.pad_id, "right")
        labels, _ = pad_batch([_field(e, "labels") for e in examples], IGNORE_INDEX, "right")
        attention_mask = apply_mask_mode(input_ids, attention_mask, self.pad_id, self.mask_mode)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _field(example: EncodedExample | dict, name: str) -> list[int]:
    return list(example[name] if isinstance(example, dict) else getattr(example, name))


def generation_batch(tokenizer: PreTrainedTokenizerBase, questions: Sequence[str],
                     system_prompt: str = SYSTEM_PROMPT, date_string: str = DATE_STRING,
                     mask_mode: MaskMode = "lengths") -> dict[str, torch.Tensor]:
    """Left-padded prompts for batched `generate` (every prompt ends where generation starts).

    The attention mask follows `mask_mode` (`apply_mask_mode`); `generate` derives the
    position ids from it (``cumsum(mask) - 1``), so under "open-unlearning" every token after
    a hidden <|eot_id|> sits one position earlier per hidden token, as in open-unlearning.
    """
    prompts = [encode_prompt(tokenizer, q, system_prompt, date_string) for q in questions]
    pad = pad_id(tokenizer)
    input_ids, attention_mask = pad_batch(prompts, pad, "left")
    return {"input_ids": input_ids,
            "attention_mask": apply_mask_mode(input_ids, attention_mask, pad, mask_mode)}
