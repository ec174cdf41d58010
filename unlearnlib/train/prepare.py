"""Getting a model ready to train and saving what training made.

The profile's switches (gradient checkpointing, LoRA with its rank, alpha and target
modules) are applied here, once, for the fine-tunes, unlearning and the audit's relearning
probe; `save_trained` writes the result as safetensors, merged or as an adapter.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.models.loading import save_model
from unlearnlib.profiles import Profile


def lora_config(profile: Profile, **overrides: Any) -> LoraConfig:
    """The profile's LoRA adapter (rank, alpha, target modules; no dropout, no bias)."""
    settings: dict[str, Any] = {
        "r": profile.lora_rank, "lora_alpha": profile.lora_alpha,
        "target_modules": list(profile.lora_target_modules), "lora_dropout": 0.0,
        "bias": "none", "task_type": "CAUSAL_LM",
    }
    settings.update(overrides)
    return LoraConfig(**settings)


def add_lora(model: PreTrainedModel, config: LoraConfig) -> PeftModel:
    """`model` with LoRA adapters; its own weights are frozen."""
    with warnings.catch_warnings():  # peft reads transformers 5's deprecated property
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        return get_peft_model(model, config)


def enable_gradient_checkpointing(model: PreTrainedModel) -> None:
    """Recompute activations in the backward pass instead of storing them (less memory).

    Called on the model, as TrainingArguments(gradient_checkpointing=...) is deprecated in
    transformers 5, which also renames the method (activation_checkpointing_enable); 4.x has
    only the old name. Non-reentrant checkpointing also works with frozen LoRA base weights.
    """
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    model.config.use_cache = False


def prepare_model(model: PreTrainedModel, profile: Profile) -> PreTrainedModel | PeftModel:
    """Apply the profile's switches: gradient checkpointing, and LoRA (rank, alpha, targets).

    With `use_lora` the result is a `PeftModel` whose base weights are frozen; otherwise every
    weight trains (full fine-tuning).
    """
    if profile.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if not profile.use_lora or isinstance(model, PeftModel):
        return model
    return add_lora(model, lora_config(profile))


def save_trained(model: PreTrainedModel | PeftModel, tokenizer: PreTrainedTokenizerBase,
                 folder: str | Path, merge: bool = True) -> Path:
    """Save a trained (e.g. unlearned) model, safetensors, with its tokenizer.

    Under LoRA, `merge=True` folds the adapter into the base weights (a plain model that
    `loading.load_model` reads; the PeftModel is merged in place) and `merge=False` writes only
    the adapter (a few MB; load it with `peft.PeftModel.from_pretrained(base, folder)`).
    """
    if not isinstance(model, PeftModel):
        return save_model(model, tokenizer, folder)
    if merge:
        return save_model(model.merge_and_unload(), tokenizer, folder)
    folder = Path(folder)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
