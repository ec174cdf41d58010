"""Unlearning from a profile: the one way the CLI, the notebooks and the sweep run it.

`unlearn_from_profile` loads the profile's full model (or another folder or Hub id) in the
training dtype, the forget split and its retain split, and calls `unlearn.unlearn`.
`ensure_unlearned` does that once per configuration and caches the result, so notebook 04
trains the course's unlearned model and 05 to 07 read it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from unlearnlib.cache import (
    BUILD_RECORD,
    atomic_dir,
    code_version,
    config_key,
    is_complete,
    write_build_record,
)
from unlearnlib.data.tofu import RETAIN_OF_FORGET, load_tofu
from unlearnlib.models.loading import load_for_profile
from unlearnlib.paths import artifacts_dir
from unlearnlib.profiles import Profile
from unlearnlib.train.prepare import save_trained
from unlearnlib.train.trainer import final_loss
from unlearnlib.train.unlearn import Objective, UnlearnTrainer, objective, unlearn
from unlearnlib.train.zoo import data_checksum, model_source

#: The profile fields that shape an unlearned model.
UNLEARNING_FIELDS = ("unlearn_epochs", "learning_rate", "train_batch_size",
                     "gradient_accumulation_steps", "seed", "precision", "use_lora", "lora_rank",
                     "lora_alpha", "lora_target_modules", "train_threads")


def unlearn_from_profile(profile: Profile, output_dir: str | Path,
                         method: str | Objective = "npo", *, full_model: str | Path | None = None,
                         max_forget: int | None = None, **unlearn_options: Any
                         ) -> UnlearnTrainer:
    """Unlearn the profile's forget split from its full model (or `full_model`, a folder or
    Hub id), paired with the retain split; returns the trained Trainer.

    `max_forget` keeps the first rows of the forget split (a quick run); `unlearn_options` go
    to `unlearn.unlearn` (callbacks, save_steps, resume_from_checkpoint, progress, and
    TrainingArguments overrides such as num_train_epochs or max_steps). The tokenizer is
    `trainer.processing_class`.
    """
    source = full_model if full_model is not None else model_source(profile, "full")
    model, tokenizer = load_for_profile(source, profile, training=True)
    forget = load_tofu(profile.forget_split, profile.data_source)
    if max_forget is not None:
        forget = forget.select(range(min(max_forget, len(forget))))
    retain = load_tofu(RETAIN_OF_FORGET[profile.forget_split], profile.data_source)
    return unlearn(model, tokenizer, forget, retain, profile, output_dir, method,
                   **unlearn_options)


def unlearned_config(profile: Profile, method: str = "npo") -> dict:
    """Everything that shapes the course's unlearned model: the input of its cache key."""
    full = model_source(profile, "full")
    if isinstance(full, Path):  # a folder: keyed by its weights, wherever they came from
        full = json.loads((full / BUILD_RECORD).read_text())["weights_sha256"]
    return {
        "method": dataclasses.asdict(objective(method)),
        "full_model": full,
        "torch": torch.__version__,
        "forget_split": profile.forget_split,
        "data_checksum": data_checksum(profile),
        "code_version": code_version(__name__),
        **{name: getattr(profile, name) for name in UNLEARNING_FIELDS},
    }


def unlearned_dir(profile: Profile, method: str = "npo") -> Path:
    """Where the profile's model unlearned with `method` is (or will be) cached."""
    key = config_key(unlearned_config(profile, method))
    return artifacts_dir("models") / f"{Path(profile.full_model).name}-{method}-{key}"


def ensure_unlearned(profile: Profile, method: str = "npo", progress: bool = True) -> Path:
    """The folder of the profile's model unlearned with `method` (published defaults, the
    profile's epochs and lr), trained first if missing or corrupt: notebook 04 trains it,
    05 to 07 read it. LoRA adapters are merged into the saved weights.
    """
    folder = unlearned_dir(profile, method)
    if is_complete(folder):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    trainer = unlearn_from_profile(profile, artifacts_dir("runs", folder.name), method,
                                   progress=progress)
    with atomic_dir(folder) as partial:
        save_trained(trainer.model, trainer.processing_class, partial, merge=True)
        write_build_record(partial, unlearned_config(profile, method),
                           final_train_loss=final_loss(trainer.state.log_history))
    return folder


def audited_model(profile: Profile, override: str | Path | None = None) -> str | Path:
    """The unlearned model notebooks 05 and 06 score and audit: `override` (their
    AUDIT_MODEL), else the profile's `audited_model` (on GPU profiles the published seed),
    else the course's own NPO model (`ensure_unlearned`, trained first if missing)."""
    return override or profile.audited_model or ensure_unlearned(profile, "npo")
