"""Supervised fine-tuning on TOFU-style QA with answer-only loss, through transformers' Trainer.

This is how the course makes its own "full" and "retain" models at tiny scale. The data is
tokenised once with TOFU's loss mask (`formatting.encode_dataset`) and batched by
`ChatCollator`; the Trainer habits (mean loss, progress lines, divergence stop) are
`trainer.CourseTrainer`'s, shared with unlearning.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainingArguments,
)

from unlearnlib.data.formatting import ChatCollator, encode_dataset
from unlearnlib.train.losses import answer_logits, nll_loss
from unlearnlib.train.trainer import CourseTrainer


class AnswerOnlyTrainer(CourseTrainer):
    """`Trainer` whose loss is the answer tokens' mean NLL, with logits for the answers only.

    Same loss as the model's own (`losses.nll_loss`: mean over the micro-batch's answer
    tokens), without computing the LM head over the prompt (`losses.answer_logits`).
    """

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                     return_outputs: bool = False, num_items_in_batch: Any = None
                     ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """NLL over the answer tokens (labels -100 elsewhere)."""
        logits, labels = answer_logits(model, inputs)
        loss = nll_loss(logits, labels)
        return (loss, {"logits": logits}) if return_outputs else loss


def finetune(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: datasets.Dataset,
             args: TrainingArguments, progress: str | None = None) -> list[dict[str, float]]:
    """Train `model` in place on QA rows with answer-only loss; returns the Trainer's log.

    `progress` labels the `EpochProgress` lines that replace the Trainer's raw log dicts. A
    non-finite loss or gradient raises `TrainingDiverged`.
    """
    trainer = AnswerOnlyTrainer(model=model, args=args,
                                train_dataset=encode_dataset(dataset, tokenizer),
                                data_collator=ChatCollator(tokenizer), progress=progress)
    trainer.train()
    return trainer.state.log_history
