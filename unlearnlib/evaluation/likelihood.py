"""Batched likelihood of answers given questions: the model pass behind every TOFU number.

For each (question, answer) pair the chat is tokenised as `unlearnlib.data.formatting` does (the
answer and its final <|eot_id|> carry the labels) and the model is run teacher-forced. Per
sample we keep what every TOFU metric needs:

* ``avg_loss = -(1/|y|) sum_t log p(y_t | x, y_<t)`` (probability ``exp(-avg_loss)``, truth
  ratio, the loss and zlib membership scores),
* ``sum_logprob = sum_t log p(y_t | x, y_<t)`` (NPO's sequence log-likelihood),
* the per-token log-probs (Min-K%) and the teacher-forced argmax (extraction strength, exact
  memorisation).

Two paths compute the same numbers. The plain one batches whole chats with `ChatCollator`.
The prompt-sharing one serves TOFU's perturbed sets, where the answer, the paraphrased answer
and the five perturbed answers of a question share its prompt: it runs each prompt once with
``use_cache=True`` and scores all the answers of the question against the copied key/value
cache, so the ~50 prompt tokens are computed once instead of seven times.

Log-softmax is taken in float32 whatever the model's dtype, under ``torch.inference_mode``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.checks import check_at_least_one, check_mask_mode
from unlearnlib.data.formatting import (
    IGNORE_INDEX,
    ChatCollator,
    MaskMode,
    apply_mask_mode,
    encode_examples,
    pad_batch,
    pad_id,
)
from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.models.loading import inference_mode, model_device


class NonFiniteLossError(ValueError):
    """A sample's loss is NaN or infinite; the message names the sample."""


@dataclass(frozen=True)
class AnswerScores:
    """Per-sample likelihood of answers, in input order.

    ``token_logprobs``, ``argmax_ids`` and ``label_ids`` hold one array per sample over its
    label tokens (the answer and the final end-of-turn token).
    """

    avg_loss: NDArray[np.float64]
    sum_logprob: NDArray[np.float64]
    num_tokens: NDArray[np.int64]
    token_logprobs: list[NDArray[np.float32]]
    argmax_ids: list[NDArray[np.int64]]
    label_ids: list[NDArray[np.int64]]

    def __len__(self) -> int:
        return len(self.avg_loss)

    @property
    def prob(self) -> NDArray[np.float64]:
        """Length-normalised probability ``exp(-avg_loss)`` per sample."""
        return tm.probability_from_loss(self.avg_loss)

    def select(self, indices: Sequence[int] | NDArray[np.integer[Any]]) -> AnswerScores:
        """The scores of a subset of samples, in the order of ``indices``."""
        idx = [int(i) for i in indices]
        return AnswerScores(
            avg_loss=self.avg_loss[idx],
            sum_logprob=self.sum_logprob[idx],
            num_tokens=self.num_tokens[idx],
            token_logprobs=[self.token_logprobs[i] for i in idx],
            argmax_ids=[self.argmax_ids[i] for i in idx],
            label_ids=[self.label_ids[i] for i in idx],
        )


def _cache_keyword(model: torch.nn.Module) -> str:
    """The forward keyword of the KV cache: ``cache`` in recent transformers, else the old name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    parameters = inspect.signature(type(base).forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _token_scores(logits: torch.Tensor, targets: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float32 ``log p(target)`` and the argmax at the scored positions only (padding and
    IGNORE_INDEX skipped before the vocabulary-wide work), flattened row by row, with the
    targets themselves and the number of scored tokens per row."""
    valid = targets != IGNORE_INDEX
    scored = logits[valid].float()
    labels = targets[valid]
    logprobs = scored.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - scored.logsumexp(-1)
    return logprobs, scored.argmax(-1), labels, valid.sum(-1)


def _batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    check_at_least_one(batch_size, "batch_size")
    return [list(order[i:i + batch_size]) for i in range(0, len(order), batch_size)]


class _Collector:
    """Gathers per-sample results by input position and checks every loss is finite."""

    def __init__(self, questions: Sequence[str], answers: Sequence[str], label: str,
                 sample_ids: Sequence[Any] | None):
        self.questions, self.answers, self.label = questions, answers, label
        self.sample_ids = sample_ids
        self.logprobs: list[NDArray[np.float32] | None] = [None] * len(questions)
        self.argmax: list[NDArray[np.int64] | None] = [None] * len(questions)
        self.labels: list[NDArray[np.int64] | None] = [None] * len(questions)

    def add_batch(self, positions: Sequence[int], scores: tuple[torch.Tensor, ...]) -> None:
        """Store the `_token_scores` of a batch whose rows are samples ``positions``."""
        logprobs, argmax, labels, counts = (t.cpu().numpy() for t in scores)
        bounds = np.cumsum(counts)[:-1]
        rows = zip(np.split(logprobs.astype(np.float32), bounds),
                   np.split(argmax.astype(np.int64), bounds),
                   np.split(labels.astype(np.int64), bounds), strict=True)
        for position, (row_logprobs, row_argmax, row_labels) in zip(positions, rows, strict=True):
            if not np.isfinite(row_logprobs).all():
                self._raise_non_finite(position)
            self.logprobs[position] = row_logprobs
            self.argmax[position] = row_argmax
            self.labels[position] = row_labels

    def _raise_non_finite(self, position: int) -> None:
        sample = position if self.sample_ids is None else self.sample_ids[position]
        raise NonFiniteLossError(
            f"non-finite loss on {self.label} sample {sample} (question "
            f"{self.questions[position]!r}, answer {self.answers[position]!r}): the model "
            "produced NaN/inf logits. Check the weights (a diverged unlearning run?) and "
            "use bf16 rather than fp16 for large models."
        )

    def result(self) -> AnswerScores:
        logprobs = [v for v in self.logprobs if v is not None]
        if len(logprobs) != len(self.logprobs):
            raise RuntimeError("internal error: some samples were not scored")
        sums = np.array([np.sum(v, dtype=np.float64) for v in logprobs], dtype=np.float64)
        counts = np.array([v.size for v in logprobs], dtype=np.int64)
        return AnswerScores(
            avg_loss=-sums / np.maximum(counts, 1),
            sum_logprob=sums,
            num_tokens=counts,
            token_logprobs=logprobs,
            argmax_ids=[v for v in self.argmax if v is not None],
            label_ids=[v for v in self.labels if v is not None],
        )


def _score_plain(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 encoded: list[Any], batch_size: int, mask_mode: MaskMode,
                 collector: _Collector, bar: tqdm) -> None:
    """Whole chats, right-padded by `ChatCollator`, longest batches first."""
    collate = ChatCollator(tokenizer, mask_mode=mask_mode)
    device = model_device(model)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i].input_ids))
    for batch in _batches(order, batch_size):
        inputs = collate([encoded[i] for i in batch])
        # Only positions from the shortest prompt on can predict a label.
        keep = inputs["input_ids"].shape[1] - min(encoded[i].prompt_length for i in batch) + 1
        out = model(input_ids=inputs["input_ids"].to(device),
                    attention_mask=inputs["attention_mask"].to(device),
                    use_cache=False, logits_to_keep=keep)
        targets = inputs["labels"][:, -keep + 1:].to(device)
        collector.add_batch(batch, _token_scores(out.logits[:, :-1], targets))
        bar.update(len(batch))


def _shared_chunks(prompts: list[tuple[int, ...]], groups: dict[tuple[int, ...], list[int]],
                   encoded: list[Any], batch_size: int) -> list[list[tuple[int, ...]]]:
    """Group prompts so an answer pass holds no more tokens than a plain batch would.

    A plain batch is ``batch_size`` whole chats; the answer pass of a chunk has one row per
    answer, only as wide as the longest answer, so it takes ``rows * answer_width <=
    batch_size * chat_width`` rows (about 4x ``batch_size`` for TOFU's short answers).
    """
    check_at_least_one(batch_size, "batch_size")
    chunks: list[list[tuple[int, ...]]] = []
    chunk: list[tuple[int, ...]] = []
    rows = answer_width = chat_width = 0
    for prompt in prompts:
        members = groups[prompt]
        answer = max(len(encoded[i].input_ids) for i in members) - len(prompt) + 1
        grown = (rows + len(members), max(answer_width, answer),
                 max(chat_width, len(prompt) + answer))
        if chunk and grown[0] * grown[1] > batch_size * grown[2]:
            chunks.append(chunk)
            chunk, grown = [], (len(members), answer, len(prompt) + answer)
        chunk.append(prompt)
        rows, answer_width, chat_width = grown
    if chunk:
        chunks.append(chunk)
    return chunks


def _score_shared(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  encoded: list[Any], batch_size: int, mask_mode: MaskMode,
                  collector: _Collector, bar: tqdm) -> None:
    """Each distinct prompt once (KV cache), then all its answers against copies of the cache.

    The prompt pass runs ``prompt[:-1]`` right-padded; the answer pass feeds
    ``[prompt[-1], y_0, ..., y_{n-2}]`` at positions ``len(prompt) - 1 + t`` so that its logits
    predict exactly ``y_0 .. y_{n-1}``. The attention mask of the answer pass is the prompt's
    mask (padding, or open-unlearning's ``ids != pad_id``) followed by the answer's.
    """
    pad = pad_id(tokenizer)
    device = model_device(model)
    groups: dict[tuple[int, ...], list[int]] = {}
    for position, example in enumerate(encoded):
        groups.setdefault(tuple(example.input_ids[:example.prompt_length]), []).append(position)
    # Longest answers first: the answer pass dominates the cost and its padding is the waste.
    prompts = sorted(groups, key=lambda p: (
        -max(len(encoded[i].input_ids) for i in groups[p]) + len(p), -len(p)))
    for chunk in _shared_chunks(prompts, groups, encoded, batch_size):
        prompt_ids, prompt_mask = pad_batch([p[:-1] for p in chunk], pad, "right")
        prompt_mask = apply_mask_mode(prompt_ids, prompt_mask, pad, mask_mode)
        out = model(input_ids=prompt_ids.to(device), attention_mask=prompt_mask.to(device),
                    use_cache=True, logits_to_keep=1)
        cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        owners = [(k, position) for k, prompt in enumerate(chunk) for position in groups[prompt]]
        cache.batch_select_indices(torch.tensor([k for k, _ in owners], device=device))
        answer_inputs = [
            [chunk[k][-1], *encoded[position].input_ids[len(chunk[k]):-1]]
            for k, position in owners
        ]
        answer_ids, answer_mask = pad_batch(answer_inputs, pad, "right")
        targets, _ = pad_batch(
            [encoded[position].input_ids[len(chunk[k]):] for k, position in owners],
            IGNORE_INDEX, "right")
        answer_mask = apply_mask_mode(answer_ids, answer_mask, pad, mask_mode)
        starts = torch.tensor([len(chunk[k]) - 1 for k, _ in owners]).unsqueeze(1)
        positions = starts + torch.arange(answer_ids.shape[1]).unsqueeze(0)
        mask = torch.cat([prompt_mask[[k for k, _ in owners]], answer_mask], dim=1)
        out = model(input_ids=answer_ids.to(device), attention_mask=mask.to(device),
                    position_ids=positions.to(device), use_cache=True,
                    **{_cache_keyword(model): cache})
        collector.add_batch([position for _, position in owners],
                            _token_scores(out.logits, targets.to(device)))
        bar.update(len(owners))


def score_answers(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 32,
    mask_mode: MaskMode = "lengths",
    share_prompts: bool | None = None,
    progress: bool = False,
    label: str = "answers",
    sample_ids: Sequence[Any] | None = None,
) -> AnswerScores:
    """Teacher-forced log-likelihood of each ``answers[i]`` given ``questions[i]``.

    ``log p(y | x) = sum_t log p(y_t | x, y_<t)`` over the answer tokens and the final
    end-of-turn token, under the Llama-3.2 chat format (`formatting`). Batches of ``batch_size``
    sequences, sorted by length (results come back in input order). ``share_prompts`` scores
    repeated questions against one cached prompt (default: when some question repeats);
    ``mask_mode`` picks the course's mask or open-unlearning's. ``label``
    and ``sample_ids`` name samples in the error raised on a NaN or infinite loss.
    """
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    if not questions:
        raise ValueError(f"no {label} to score: the split is empty")
    if sample_ids is not None and len(sample_ids) != len(questions):
        raise ValueError(f"{len(sample_ids)} sample ids for {len(questions)} questions")
    check_mask_mode(mask_mode)
    encoded = encode_examples(tokenizer, questions, answers)
    if share_prompts is None:
        share_prompts = len(set(questions)) < len(questions)
    collector = _Collector(questions, answers, label, sample_ids)
    score = _score_shared if share_prompts else _score_plain
    with inference_mode(model), tqdm(total=len(encoded), desc=f"scoring {label}",
                                 disable=not progress, leave=False) as bar:
        score(model, tokenizer, encoded, batch_size, mask_mode, collector, bar)
    return collector.result()


@dataclass(frozen=True)
class PerturbedSetScores:
    """Scores of a TOFU ``_perturbed`` set: every answer variant of each question.

    ``perturbed`` is flattened question-major (question ``j``'s answers are rows
    ``j*m .. j*m + m - 1``, ``m = num_perturbed``). ``paraphrased`` is None for sets without
    a ``paraphrased_answer`` (real authors, world facts).
    """

    answer: AnswerScores
    paraphrased: AnswerScores | None
    perturbed: AnswerScores
    num_perturbed: int

    @property
    def perturbed_avg_loss(self) -> NDArray[np.float64]:
        """Average losses of the perturbed answers, shape ``(n, m)``."""
        return self.perturbed.avg_loss.reshape(-1, self.num_perturbed)

    @property
    def correct(self) -> AnswerScores:
        """The truth ratio's right answer: the paraphrased answer where there is one."""
        return self.paraphrased if self.paraphrased is not None else self.answer

    def truth_ratio(self) -> NDArray[np.float64]:
        """Per-question truth ratio of the set (defined at `tofu_metrics.truth_ratio`)."""
        return tm.truth_ratio(self.correct.avg_loss, self.perturbed_avg_loss)


def score_perturbed_set(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Any,
    *,
    batch_size: int = 32,
    mask_mode: MaskMode = "lengths",
    share_prompts: bool = True,
    progress: bool = False,
    label: str = "perturbed set",
) -> PerturbedSetScores:
    """Score `answer`, `paraphrased_answer` (if present) and every `perturbed_answer` at once.

    All variants are scored against the original `question` (as open-unlearning's truth ratio
    does), in one prompt-sharing pass. ``dataset`` is a `datasets.Dataset` or anything with
    those columns; every row needs the same number of perturbed answers.
    """
    questions = list(dataset["question"])
    if not questions:
        raise ValueError(f"no {label} to score: the split is empty")
    answers = list(dataset["answer"])
    columns = getattr(dataset, "column_names", None) or list(dataset.keys())
    paraphrased = list(dataset["paraphrased_answer"]) if "paraphrased_answer" in columns else None
    perturbed = [list(p) if isinstance(p, list) else [p] for p in dataset["perturbed_answer"]]
    counts = {len(p) for p in perturbed}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{label}: every row needs the same, non-zero number of perturbed "
                         f"answers; found counts {sorted(counts)}")
    m = counts.pop()
    flat_q: list[str] = []
    flat_a: list[str] = []
    ids: list[int] = []
    for j, question in enumerate(questions):
        variants = [answers[j], *([paraphrased[j]] if paraphrased else []), *perturbed[j]]
        flat_q.extend([question] * len(variants))
        flat_a.extend(variants)
        ids.extend([j] * len(variants))
    scores = score_answers(model, tokenizer, flat_q, flat_a, batch_size=batch_size,
                           mask_mode=mask_mode, share_prompts=share_prompts,
                           progress=progress, label=label, sample_ids=ids)
    width = 1 + (1 if paraphrased else 0) + m
    starts = np.arange(len(questions)) * width
    return PerturbedSetScores(
        answer=scores.select(starts),
        paraphrased=scores.select(starts + 1) if paraphrased else None,
        perturbed=scores.select((starts[:, None] + (width - m) + np.arange(m)).ravel()),
        num_perturbed=m,
    )


def answer_probabilities(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                         dataset: Any, batch_size: int = 32, *,
                         mask_mode: MaskMode = "lengths", progress: bool = False
                         ) -> NDArray[np.float64]:
    """Per row of a (question, answer) dataset: ``p = exp(-avg_loss)`` of the answer + eot.

    ``avg_loss = -(1/|y|) sum_t log p(y_t | x, y_<t)``, so ``p`` is the geometric mean of the
    answer's token probabilities (TOFU's ``Q_A_Prob`` per sample).
    """
    scores = score_answers(model, tokenizer, list(dataset["question"]), list(dataset["answer"]),
                           batch_size=batch_size, mask_mode=mask_mode, progress=progress,
                           label="answer probabilities")
    return scores.prob


def truth_ratios(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 perturbed_dataset: Any, batch_size: int = 32, *,
                 mask_mode: MaskMode = "lengths", progress: bool = False
                 ) -> NDArray[np.float64]:
    """Per-question truth ratio on a TOFU ``_perturbed`` set (`tofu_metrics.truth_ratio`).

    The correct answer is the ``paraphrased_answer`` (the ``answer`` for real authors and
    world facts); every answer is scored given the original question.
    """
    scores = score_perturbed_set(model, tokenizer, perturbed_dataset, batch_size=batch_size,
                                 mask_mode=mask_mode, progress=progress, label="truth ratios")
    return scores.truth_ratio()
