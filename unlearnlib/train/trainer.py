"""The course's Trainer conventions, shared by fine-tuning and unlearning.

`CourseTrainer` is transformers' `Trainer` with three habits: `compute_loss` returns a
per-micro-batch mean (the Trainer divides it by the accumulation steps), progress is one line
per epoch instead of the raw log dicts, and training stops at the first non-finite gradient
(`FiniteTraining`). `training_arguments` builds its arguments from a profile.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from unlearnlib.profiles import Profile, resolve_device, resolve_dtype

_HAS_WARMUP_RATIO = "warmup_ratio" in {f.name for f in dataclasses.fields(TrainingArguments)}


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


def final_loss(log_history: list[dict[str, float]]) -> float | None:
    """The last training loss a Trainer logged, or None if it logged none."""
    losses = [entry["loss"] for entry in log_history if "loss" in entry]
    return losses[-1] if losses else None


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


def _align_pad_token(model: Any, tokenizer: Any) -> None:
    """Give the model the tokenizer's pad id where its config has none (Llama-3.2's has none,
    open-unlearning pads with eos), as the Trainer would, but without its warning."""
    pad = getattr(tokenizer, "pad_token_id", None)
    if model is None or pad is None or model.config.pad_token_id is not None:
        return
    model.config.pad_token_id = pad
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = pad


class CourseTrainer(Trainer):
    """`Trainer` whose `compute_loss` returns a per-micro-batch mean, with one progress line
    per epoch (labelled `progress`, None for silence) and a stop at non-finite gradients."""

    # The Trainer divides the returned loss by the accumulation steps itself.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, progress: str | None = None, **kwargs: Any):
        _align_pad_token(kwargs.get("model", args[0] if args else None),
                         kwargs.get("processing_class"))
        super().__init__(*args, **kwargs)
        # transformers < 5 reads this instead of `loss_is_scaled_for_ga`.
        self.model_accepts_loss_kwargs = False
        self.add_callback(FiniteTraining())
        self.remove_callback(PrinterCallback)
        if progress is not None:
            self.add_callback(EpochProgress(progress))
