"""Supervised fine-tuning on TOFU-style QA with answer-only loss, through transformers' Trainer.

This is how the course makes its own "full" and "retain" models at tiny scale, and the base
of the unlearning trainer: the data is tokenised once with `encode_example`'s loss mask and
batched by `ChatCollator`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    PreTrainedModel,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers import PreTrainedTokenizerBase as Tokenizer

from unlearnlib.data.formatting import ChatCollator, encode_example
from unlearnlib.profiles import Profile, resolve_device, resolve_dtype
from unlearnlib.train.losses import answer_logits, nll_loss

_HAS_WARMUP_RATIO = "warmup_ratio" in {f.name for f in dataclasses.fields(TrainingArguments)}


def add_lora(model: PreTrainedModel, profile: Profile) -> PeftModel:
    """`model` with the profile's LoRA adapters (`lora_rank`, `lora_alpha`,
    `lora_target_modules`); its own weights are frozen."""
    config = LoraConfig(r=profile.lora_rank, lora_alpha=profile.lora_alpha,
                        target_modules=list(profile.lora_target_modules), lora_dropout=0.0,
                        bias="none", task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft reads transformers 5's deprecated property
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        return get_peft_model(model, config)


def encode_dataset(dataset: datasets.Dataset, tokenizer: Tokenizer,
                   max_length: int = 512) -> datasets.Dataset:
    """Tokenise every (question, answer) row into input_ids and labels (prompt masked)."""
    encoded = [encode_example(tokenizer, row["question"], row["answer"], max_length=max_length)
               for row in dataset]
    return datasets.Dataset.from_dict({
        "input_ids": [e.input_ids for e in encoded],
        "labels": [e.labels for e in encoded],
    })


def training_arguments(profile: Profile, output_dir: str | Path, **overrides: Any
                       ) -> TrainingArguments:
    """TrainingArguments from a profile: precision, batch sizes, seed, quiet logging.

    Keyword overrides win (e.g. num_train_epochs, max_steps, learning_rate, save_steps).
    `warmup_ratio` (a share of the steps) works on transformers 4 and 5 alike (5 takes the
    ratio as a float `warmup_steps`).
    """
    device = resolve_device(profile)
    dtype = resolve_dtype(profile, device)
    settings: dict[str, Any] = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": profile.train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "num_train_epochs": profile.finetune_epochs,
        "learning_rate": profile.learning_rate,
        "weight_decay": 0.01,
        "lr_scheduler_type": "linear",
        "seed": profile.seed,
        "data_seed": profile.seed,
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        "use_cpu": device.type == "cpu",
        "remove_unused_columns": False,
        "save_strategy": "no",
        "logging_strategy": "epoch",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        # Every weight gets a gradient: skip DDP's search for unused ones (multi-process runs).
        "ddp_find_unused_parameters": False,
    }
    settings.update(overrides)
    if "warmup_ratio" in settings and not _HAS_WARMUP_RATIO:
        settings["warmup_steps"] = settings.pop("warmup_ratio")
    return TrainingArguments(**settings)


class EpochProgress(TrainerCallback):
    """Print a line (label, epoch, training loss, seconds) for about `lines` of the logs (one
    per epoch under `training_arguments`' logging_strategy="epoch") and always the last. Long
    fine-tunes would otherwise sit silent with the Trainer's progress bars switched off.
    """

    def __init__(self, label: str, lines: int = 6):
        self.label, self.lines = label, lines
        self._start, self._logs = time.perf_counter(), 0

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        self._start, self._logs = time.perf_counter(), 0

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not (state.is_world_process_zero and logs and "loss" in logs):
            return
        self._logs += 1
        every = max(1, math.ceil(args.num_train_epochs / self.lines))
        last = state.global_step >= state.max_steps
        if self._logs % every == 0 or last:
            print(f"{self.label}: epoch {state.epoch or 0:.3g}/{args.num_train_epochs:.3g}"
                  f"  loss {logs['loss']:.3f}  {time.perf_counter() - self._start:.0f} s",
                  flush=True)


class TrainingDiverged(RuntimeError):
    """The loss or the gradients became inf or NaN; the message names the step."""


class FiniteTraining(TrainerCallback):
    """Stop training at the first step whose gradients are not finite.

    A NaN or infinite loss gives non-finite gradients, so this checks the loss too, before the
    optimizer step can write NaN weights (the Trainer's log would show such a loss as 0.0).
    Under fp16 the loss scaler skips a step whose scaled gradients overflow and lowers its
    scale, so only `fp16_patience` such steps in a row count as divergence.
    """

    def __init__(self, fp16_patience: int = 30):
        self.fp16_patience = fp16_patience
        self._overflows = 0

    def on_pre_optimizer_step(self, args: TrainingArguments, state: TrainerState,
                              control: TrainerControl, model: torch.nn.Module | None = None,
                              **kwargs: Any) -> None:
        grads = [p.grad.detach().float().norm() for p in model.parameters()
                 if p.grad is not None] if model is not None else []
        norm = torch.stack(grads).norm() if grads else torch.tensor(0.0)
        if torch.isfinite(norm):
            self._overflows = 0
            return
        self._overflows += 1
        if args.fp16 and self._overflows < self.fp16_patience:
            return
        raise TrainingDiverged(
            f"Training diverged at step {state.global_step + 1} (epoch {state.epoch or 0:.3g}): "
            f"the loss or its gradient norm is {norm.item()}. Lower the learning rate (it is "
            f"{args.learning_rate:g}) and run again; no finished model was saved.")


class AnswerOnlyTrainer(Trainer):
    """`Trainer` whose loss is the answer tokens' mean NLL, with logits for the answers only.

    Same loss as the model's own (`losses.nll_loss`: mean over the micro-batch's answer
    tokens), without computing the LM head over the prompt (`losses.answer_logits`).
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # A per-micro-batch mean: the Trainer divides it by the accumulation steps.
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                     return_outputs: bool = False, num_items_in_batch: Any = None
                     ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """NLL over the answer tokens (labels -100 elsewhere)."""
        logits, labels = answer_logits(model, inputs)
        loss = nll_loss(logits, labels)
        return (loss, {"logits": logits}) if return_outputs else loss


def finetune(model: PreTrainedModel, tokenizer: Tokenizer, dataset: datasets.Dataset,
             args: TrainingArguments, progress: str | None = None) -> list[dict[str, float]]:
    """Train `model` in place on QA rows with answer-only loss; returns the Trainer's log.

    `progress` labels the `EpochProgress` lines that replace the Trainer's raw log dicts. A
    non-finite loss or gradient raises `TrainingDiverged`.
    """
    trainer = AnswerOnlyTrainer(model=model, args=args,
                                train_dataset=encode_dataset(dataset, tokenizer),
                                data_collator=ChatCollator(tokenizer))
    trainer.add_callback(FiniteTraining())
    trainer.remove_callback(PrinterCallback)  # the raw log dicts
    if progress is not None:
        trainer.add_callback(EpochProgress(progress))
    trainer.train()
    return trainer.state.log_history
