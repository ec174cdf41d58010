"""Answers to TOFU questions (greedy, or sampled) and their ROUGE against the gold answers.

Prompts are the Llama-3.2 chat (`formatting.render_chat`) up to the assistant header,
left-padded so every row ends where generation starts (`formatting.generation_batch`). Decoding
is greedy unless sampling is asked for (the leak audit's best-of-N probes), stops at
<|eot_id|>, and the texts are decoded as open-unlearning decodes them (special tokens
skipped, tokenisation spaces cleaned up, stripped), so a logged ``generation`` and
``ground_truth`` read exactly like the published ones (e.g. "Mammadov , is" becomes
"Mammadov, is" in both).

With ``mask_mode="open-unlearning"`` the prompts get open-unlearning's attention mask, which
hides the prompt's <|eot_id|> tokens and so moves every later position (`generation_batch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.checks import check_at_least_one
from unlearnlib.data.formatting import (
    MaskMode,
    encode_example,
    encode_prompt,
    generation_batch,
    pad_id,
)
from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.models.loading import inference_mode, model_device


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int],
                clean_up: bool = True) -> str:
    """Token ids to text as open-unlearning decodes them: special tokens skipped and, with
    ``clean_up``, transformers 4's tokenisation-space clean-up (" ," -> ",", " 's" -> "'s"),
    which transformers 5 no longer applies to BPE tokenizers."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True,
                            clean_up_tokenization_spaces=False)
    return tokenizer.clean_up_tokenization(text) if clean_up else text


def gold_text(tokenizer: PreTrainedTokenizerBase, question: str, answer: str) -> str:
    """The gold answer as a log's ``ground_truth``: its label tokens decoded and stripped."""
    example = encode_example(tokenizer, question, answer)
    return decode_text(tokenizer, example.input_ids[example.prompt_length:]).strip()


def generate_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    progress: bool = False,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int | None = None,
    mask_mode: MaskMode = "lengths",
) -> list[str]:
    """One answer to each question, cut at the end-of-turn token: greedy unless `do_sample`.

    Questions are batched longest first (less padding) and the answers returned in input
    order. With `do_sample` each answer is drawn at `temperature` from the nucleus `top_p`
    (no top-k cut-off); `torch.manual_seed(seed)` is set once before the batches when a seed
    is given. The batch order depends only on the questions, so the same seed, questions and
    batch size give the same samples. `mask_mode` picks the prompts' attention mask and with
    it the position ids `generate` derives (`formatting.generation_batch`).
    """
    if not questions:
        raise ValueError("no questions to answer: the split is empty")
    check_at_least_one(batch_size, "batch_size")
    decoding = {**_decoding(do_sample, temperature, top_p), "max_new_tokens": max_new_tokens}
    order = sorted(range(len(questions)), key=lambda i: -len(questions[i]))
    answers: list[str] = [""] * len(questions)
    if do_sample and seed is not None:
        torch.manual_seed(seed)
    with inference_mode(model), tqdm(total=len(questions), desc="generating", disable=not progress,
                                 leave=False) as bar:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            texts = _generate_batch(model, tokenizer, [questions[i] for i in batch], mask_mode,
                                    decoding)
            for position, text in zip(batch, texts, strict=True):
                answers[position] = text
            bar.update(len(batch))
    return answers


def _decoding(do_sample: bool, temperature: float, top_p: float) -> dict[str, Any]:
    """`generate`'s decoding arguments: greedy, or nucleus sampling with checked settings."""
    if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1], got "
                         f"temperature={temperature} and top_p={top_p}; for greedy answers "
                         "leave do_sample=False.")
    if do_sample:
        return {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
    return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def _generate_batch(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    questions: list[str], mask_mode: MaskMode, decoding: dict[str, Any]
                    ) -> list[str]:
    """One batch of answers, each cut at its first end-of-turn token and decoded."""
    device = model_device(model)
    eot = tokenizer.eos_token_id
    inputs = generation_batch(tokenizer, questions, mask_mode=mask_mode)
    output = model.generate(
        input_ids=inputs["input_ids"].to(device),
        attention_mask=inputs["attention_mask"].to(device),
        num_beams=1, eos_token_id=eot, pad_token_id=pad_id(tokenizer), **decoding,
    )
    texts = []
    for ids in output[:, inputs["input_ids"].shape[1]:].tolist():
        if eot in ids:
            ids = ids[:ids.index(eot)]
        texts.append(decode_text(tokenizer, ids).strip())
    return texts


def rouge_records(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 32,
    progress: bool = False,
    mask_mode: MaskMode = "lengths",
) -> list[dict[str, Any]]:
    """Per question, ROUGE of the greedy answer against the gold one, as TOFU_EVAL.json logs it.

    ``{"rouge1_recall", "rougeL_f1", "rougeL_recall", "input", "ground_truth",
    "generation"}``; rougeL_recall = LCS(gold, generated) / |gold| in stemmed words
    (`tofu_metrics.rouge_recall`). ``input`` is the decoded prompt and ``ground_truth`` the
    decoded gold answer, both as open-unlearning writes them. Answers are generated under
    `mask_mode` (`generate_answers`).
    """
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    generations = generate_answers(model, tokenizer, questions, max_new_tokens=max_new_tokens,
                                   batch_size=batch_size, progress=progress, mask_mode=mask_mode)
    records = []
    for question, answer, generation in zip(questions, answers, generations, strict=True):
        gold = gold_text(tokenizer, question, answer)
        records.append({
            **tm.rouge_recall(gold, generation),
            "input": decode_text(tokenizer, encode_prompt(tokenizer, question)),
            "ground_truth": gold,
            "generation": generation,
        })
    return records
