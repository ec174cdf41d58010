"""Unlearning on top of transformers' `Trainer`: GA, GradDiff, NPO and SimNPO.

Only the loss changes; the Trainer keeps its optimiser, schedule, mixed precision, logging,
checkpointing and multi-process support. Each forget sample is paired with a retain sample
drawn uniformly at random; the draw is a function of (seed, epoch, forget index), so a run
resumed from a checkpoint sees exactly the pairs an uninterrupted run would.

NPO needs the reference model's log pi_ref(y|x) on the forget answers. The reference is fixed,
so no second copy of the model is kept (open-unlearning keeps a deep copy: 2.5 GB more for
a 1B model in bf16):

* LoRA: the reference is the same network with the adapter switched off
  (`with model.disable_adapter():`), one extra forward pass without gradients per step;
* full fine-tuning: log pi_ref is computed once, before training, for every forget sample,
  and each batch looks its values up by the samples' indices.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import torch
from peft import PeftModel
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from unlearnlib.checks import check_at_least_one, check_learning_rate, check_positive
from unlearnlib.data.formatting import ChatCollator, encode_dataset
from unlearnlib.models.loading import check_model_folder, torch_threads
from unlearnlib.profiles import Profile
from unlearnlib.train.losses import (
    answer_lengths,
    answer_logits,
    gradient_ascent_loss,
    nll_loss,
    npo_loss,
    sequence_log_prob,
    simnpo_loss,
)
from unlearnlib.train.prepare import prepare_model
from unlearnlib.train.trainer import CourseTrainer, training_arguments

Method = Literal["ga", "graddiff", "npo", "simnpo"]
METHODS: tuple[str, ...] = ("ga", "graddiff", "npo", "simnpo")
#: Checkpoints kept on disk: the newest and one before it, the fallback if the newest was
#: cut short mid-save (a 1B model's checkpoint with AdamW states takes several GB).
KEEP_CHECKPOINTS = 2


@dataclass(frozen=True)
class Objective:
    """What to minimise: total = gamma * L_forget(method) + alpha * NLL(retain).

    `beta` is NPO's / SimNPO's inverse temperature and `delta` SimNPO's margin; GA has no
    retain term (alpha = 0), GradDiff is GA plus the retain NLL.
    """

    method: Method = "npo"
    beta: float = 0.1
    alpha: float = 1.0
    gamma: float = 1.0
    delta: float = 0.0

    def __post_init__(self) -> None:
        if self.method in ("npo", "simnpo"):
            check_positive(self.beta, f"beta of {self.method}",
                           " (the loss divides by beta; its limit beta -> 0 is gradient "
                           "ascent, method 'ga')")

    @property
    def uses_retain(self) -> bool:
        """Whether batches need a paired retain sample (alpha > 0)."""
        return self.alpha != 0.0

    @property
    def uses_reference(self) -> bool:
        """Only NPO compares against the reference model."""
        return self.method == "npo"


#: Published defaults (open-unlearning's configs).
OBJECTIVE_DEFAULTS: dict[str, Objective] = {
    "ga": Objective("ga", alpha=0.0),
    "graddiff": Objective("graddiff"),
    "npo": Objective("npo", beta=0.1),
    "simnpo": Objective("simnpo", beta=4.5, gamma=0.125, delta=0.0),
}


def objective(method: str = "npo", **overrides: float) -> Objective:
    """A method's published defaults with some hyper-parameters changed (beta, alpha, ...)."""
    if method not in OBJECTIVE_DEFAULTS:
        raise ValueError(f"Unknown unlearning method {method!r}. Valid methods: "
                         f"{', '.join(METHODS)}.")
    return replace(OBJECTIVE_DEFAULTS[method], **overrides)


class ForgetRetainDataset(torch.utils.data.Dataset):
    """The forget rows, each paired with a retain row drawn uniformly at random.

    The retain partner of forget row i in epoch e is drawn from a generator seeded with
    (seed, e, i): reproducible across processes and across a resume, and fresh every epoch.
    An epoch is one pass over the forget rows (as in open-unlearning).
    """

    def __init__(self, forget: datasets.Dataset, retain: datasets.Dataset | None,
                 tokenizer: PreTrainedTokenizerBase, seed: int = 0):
        self.forget = _encoded_rows(forget, tokenizer)
        self.retain = _encoded_rows(retain, tokenizer) if retain is not None else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose retain draws `__getitem__` returns."""
        self.epoch = epoch

    def retain_index(self, index: int) -> int:
        """The retain row paired with forget row `index` in the current epoch."""
        assert self.retain is not None
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(len(self.retain)))

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index, "forget": self.forget[index]}
        if self.retain is not None:
            item["retain"] = self.retain[self.retain_index(index)]
        return item


def _encoded_rows(rows: datasets.Dataset, tokenizer: PreTrainedTokenizerBase
                  ) -> list[dict[str, list[int]]]:
    encoded = encode_dataset(rows, tokenizer)
    return [{"input_ids": ids, "labels": labels}
            for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True)]


class PairCollator:
    """Batch `ForgetRetainDataset` items: {"index", "forget": batch, "retain": batch}."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.chat = ChatCollator(tokenizer)

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
            "forget": self.chat([item["forget"] for item in items]),
        }
        if "retain" in items[0]:
            batch["retain"] = self.chat([item["retain"] for item in items])
        return batch


class _PairingEpoch(TrainerCallback):
    """Tell the dataset which epoch starts, so the retain draws follow (seed, epoch, index)."""

    def __init__(self, dataset: ForgetRetainDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, **kwargs: Any) -> None:
        # state.epoch is e.0 at a boundary and e + fraction when resuming inside epoch e.
        self.dataset.set_epoch(int(state.epoch or 0))


@torch.no_grad()
def forget_log_probs(model: torch.nn.Module, dataset: ForgetRetainDataset, collator: PairCollator,
                     batch_size: int = 32, device: torch.device | str = "cpu",
                     autocast: Callable[[], contextlib.AbstractContextManager] | None = None
                     ) -> torch.Tensor:
    """log pi(y|x) of `model` on every forget row, in row order: NPO's reference, computed once."""
    was_training = model.training
    model.eval()
    values = []
    context = autocast or contextlib.nullcontext
    for start in range(0, len(dataset.forget), batch_size):
        batch = collator.chat(dataset.forget[start:start + batch_size])
        batch = {k: v.to(device) for k, v in batch.items()}
        with context():
            values.append(sequence_log_prob(*answer_logits(model, batch)).float())
    model.train(was_training)
    return torch.cat(values)


class UnlearnTrainer(CourseTrainer):
    """`Trainer` whose loss is an unlearning objective over paired forget/retain batches.

    The reference for NPO is, in order of precedence: `reference_model` if given (an explicit
    frozen copy, open-unlearning's way; kept for comparisons and the memory benchmark), the
    model with its LoRA adapter disabled, or log-probabilities precomputed here, at
    construction, from the model as passed in (so build the trainer from the model you start
    unlearning from, also when resuming from a checkpoint).
    """

    def __init__(self, model: PreTrainedModel, args: TrainingArguments,
                 train_dataset: ForgetRetainDataset, processing_class: PreTrainedTokenizerBase,
                 objective: Objective, reference_model: torch.nn.Module | None = None,
                 **kwargs: Any):
        kwargs.setdefault("data_collator", PairCollator(processing_class))
        super().__init__(model=model, args=args, train_dataset=train_dataset,
                         processing_class=processing_class, **kwargs)
        if objective.uses_retain and train_dataset.retain is None:
            raise ValueError(f"{objective.method} with alpha={objective.alpha} needs retain rows.")
        self.objective = objective
        self.reference_model = reference_model
        if reference_model is not None:
            reference_model.eval().requires_grad_(False).to(args.device)
        self.reference_log_probs: torch.Tensor | None = None
        adapter = isinstance(model, PeftModel)
        if objective.uses_reference and reference_model is None and not adapter:
            self.reference_log_probs = forget_log_probs(
                self.model, train_dataset, self.data_collator, args.per_device_eval_batch_size,
                args.device, self.accelerator.autocast)
        self._terms: dict[str, list[torch.Tensor]] = {}
        self.add_callback(_PairingEpoch(train_dataset))

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, Any],
                     return_outputs: bool = False, num_items_in_batch: Any = None
                     ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """total = gamma * L_forget + alpha * NLL(retain); see `unlearnlib.train.losses`."""
        obj = self.objective
        logits, labels = answer_logits(model, inputs["forget"])
        if obj.method in ("ga", "graddiff"):
            forget_term = gradient_ascent_loss(nll_loss(logits, labels))
        elif obj.method == "npo":
            log_pi = sequence_log_prob(logits, labels)
            forget_term = npo_loss(log_pi, self._reference_log_pi(model, inputs), obj.beta)
        else:
            forget_term = simnpo_loss(sequence_log_prob(logits, labels), answer_lengths(labels),
                                      obj.beta, obj.delta)
        loss = obj.gamma * forget_term
        self._record("forget_loss", forget_term)
        if obj.uses_retain:
            retain_nll = nll_loss(*answer_logits(model, inputs["retain"]))
            loss = loss + obj.alpha * retain_nll
            self._record("retain_nll", retain_nll)
        return (loss, {"logits": logits}) if return_outputs else loss

    def _reference_log_pi(self, model: torch.nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        forget = inputs["forget"]
        if self.reference_log_probs is not None:
            return self.reference_log_probs.to(forget["labels"].device)[inputs["index"]]
        with torch.no_grad(), self.accelerator.autocast():
            if self.reference_model is not None:
                return sequence_log_prob(*answer_logits(self.reference_model, forget))
            peft_model = self.accelerator.unwrap_model(model)
            with peft_model.disable_adapter():
                return sequence_log_prob(*answer_logits(peft_model, forget))

    def _record(self, name: str, value: torch.Tensor) -> None:
        self._terms.setdefault(name, []).append(value.detach().float())

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Add the mean forget and retain terms since the last log to the Trainer's log."""
        if "loss" in logs:
            logs.update({name: torch.stack(v).mean().item() for name, v in self._terms.items()})
            self._terms = {}
        super().log(logs, *args, **kwargs)


def check_schedule(learning_rate: Any, epochs: Any) -> None:
    """Refuse an lr that is not finite and positive, and fewer than one epoch, before training.

    0 epochs would save the starting model as if it were unlearned.
    """
    check_learning_rate(learning_rate)
    check_at_least_one(epochs, "epochs", " (0 epochs would save the starting model as if it "
                                         "were unlearned)")


def unlearning_arguments(profile: Profile, output_dir: str | Path, n_forget: int,
                         save_steps: int | str | None = None, **overrides: Any
                         ) -> TrainingArguments:
    """TrainingArguments for unlearning: the profile's epochs and lr, one epoch of warm-up.

    `save_steps` turns on safetensors checkpoints (resumable) every that many steps, or at
    the end of every epoch with "epoch"; the newest `KEEP_CHECKPOINTS` are kept. Keyword
    overrides win.
    """
    probe = training_arguments(profile, output_dir)
    per_step = probe.per_device_train_batch_size * probe.gradient_accumulation_steps
    steps_per_epoch = -(-n_forget // (per_step * max(1, probe.world_size)))
    settings: dict[str, Any] = {
        "num_train_epochs": profile.unlearn_epochs,
        "learning_rate": profile.learning_rate,
        "warmup_steps": steps_per_epoch,
    }
    if save_steps == "epoch":
        settings.update(save_strategy="epoch", save_total_limit=KEEP_CHECKPOINTS)
    elif save_steps:
        settings.update(save_strategy="steps", save_steps=save_steps,
                        save_total_limit=KEEP_CHECKPOINTS)
    settings.update(overrides)
    check_schedule(settings["learning_rate"], settings["num_train_epochs"])
    return training_arguments(profile, output_dir, **settings)


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` in `output_dir`, or None.

    The Trainer writes trainer_state.json last, so a checkpoint without a readable one (or
    with unreadable weights) was cut short while saving: it is reported on stderr, removed,
    and the one before it is used.
    """
    folders = [p for p in Path(output_dir).glob("checkpoint-*")
               if p.is_dir() and p.name.rpartition("-")[2].isdigit()]
    for folder in sorted(folders, key=lambda p: int(p.name.rpartition("-")[2]), reverse=True):
        try:
            json.loads((folder / "trainer_state.json").read_text())
            check_model_folder(folder)
        except (OSError, ValueError) as error:
            print(f"unlearnlib: skipping {folder}, which is incomplete (interrupted while "
                  f"saving?): {error}", file=sys.stderr)
            shutil.rmtree(folder, ignore_errors=True)
            continue
        return folder
    return None


def unlearn(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, forget: datasets.Dataset,
            retain: datasets.Dataset | None, profile: Profile, output_dir: str | Path,
            method: str | Objective = "npo", *, save_steps: int | None = None,
            callbacks: Sequence[TrainerCallback] = (),
            resume_from_checkpoint: str | bool | None = None,
            reference_model: torch.nn.Module | None = None, progress: bool = True,
            **training_overrides: Any) -> UnlearnTrainer:
    """Unlearn `forget` from `model` (paired with `retain`) and return the trained Trainer.

    `method` is a name ("ga", "graddiff", "npo", "simnpo") with its published defaults or an
    `Objective`. The profile decides LoRA or full fine-tuning, precision, batch sizes, epochs
    and lr; `training_overrides` go to `TrainingArguments` (e.g. num_train_epochs, max_steps).
    The trained model is `trainer.model` (a `PeftModel` under LoRA; see
    `prepare.save_trained`).
    `progress` prints one line per log (epoch, loss, seconds) instead of the raw log dicts.
    `resume_from_checkpoint=True` resumes from `last_checkpoint(output_dir)`. A non-finite
    loss or gradient stops training with a `trainer.TrainingDiverged` error.
    """
    goal = method if isinstance(method, Objective) else objective(method)
    model = prepare_model(model, profile)
    pairs = ForgetRetainDataset(forget, retain if goal.uses_retain else None, tokenizer,
                                seed=profile.seed)
    args = unlearning_arguments(profile, output_dir, len(pairs), save_steps,
                                **training_overrides)
    if resume_from_checkpoint is True:
        resume_from_checkpoint = last_checkpoint(output_dir)
        if resume_from_checkpoint is None:
            raise FileNotFoundError(f"No complete checkpoint-N folder in {output_dir} to "
                                    "resume from; start from step 0 instead.")
    trainer = UnlearnTrainer(model, args, pairs, tokenizer, goal,
                             reference_model=reference_model, callbacks=list(callbacks),
                             progress=goal.method if progress else None)
    threads = profile.train_threads
    with contextlib.nullcontext() if threads is None else torch_threads(threads):
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer
