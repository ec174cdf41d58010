"""The three scales of the course as plain typed objects: `tiny`, `colab-t4`, `gpu-full`.

A profile fixes everything that legitimately differs between a laptop CPU and a GPU:
data source, models, LoRA or full fine-tuning, precision, batch sizes, epochs and the
generation length. Everything else is the same code path at every scale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Precision = Literal["auto", "fp32", "fp16", "bf16"]


@dataclass(frozen=True)
class TinyModelSize:
    """Shape of the CPU-sized Llama the `tiny` profile trains from scratch."""

    hidden_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 512
    vocab_size: int = 3000
    max_position_embeddings: int = 256


@dataclass(frozen=True)
class Profile:
    """One scale of the course. Override any field with `get_profile(name, field=value)`."""

    name: str
    #: "mini" (TOFU-mini, shipped), "hub" (locuslab/TOFU) or a local folder in the Hub layout.
    data_source: str
    #: Model to unlearn from and the retain reference: Hub ids, local folders, or "tiny"
    #: (trained by the course itself on TOFU-mini).
    full_model: str
    retain_model: str
    forget_split: str = "forget10"
    requires_cuda: bool = False
    precision: Precision = "auto"
    use_lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_target_modules: tuple[str, ...] = (
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    )
    gradient_checkpointing: bool = False
    train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    eval_batch_size: int = 32
    finetune_epochs: int = 20
    unlearn_epochs: int = 10
    learning_rate: float = 1e-5
    max_new_tokens: int = 200
    #: Seed of unlearning (retain pairing, data order) and of sampling in the audit. The
    #: starting models do not depend on it, so another seed is another run from the same start.
    seed: int = 0
    #: torch threads while training (None: torch's default). One thread makes tiny runs give
    #: the same weights on every thread count, and is faster on a busy 2-core machine.
    train_threads: int | None = None
    #: Tiny profile: train the base, full and retain models on this machine instead of using
    #: the ones shipped with the package (which every student shares).
    train_from_scratch: bool = False
    #: Seeds the run-to-run spread of notebooks 05 and 07 trains the unlearning recipe with
    #: (one full unlearning run each: cheap on tiny, an hour on a T4 for four).
    spread_seeds: tuple[int, ...] = ()
    #: A second retain model (another seed) for the noise floor of forget quality, or None
    #: where none is published. "tiny": the course's own, shipped with the package.
    second_retain_model: str | None = None
    tiny_model: TinyModelSize = field(default_factory=TinyModelSize)

    def replace(self, **overrides: Any) -> Profile:
        """A copy with some fields changed; unknown names raise with the valid ones."""
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - valid)
        if unknown:
            raise TypeError(
                f"Profile has no field(s) {unknown}. Valid fields: {', '.join(sorted(valid))}"
            )
        for name in ("lora_target_modules", "spread_seeds"):
            if name in overrides:
                overrides[name] = tuple(overrides[name])
        if isinstance(overrides.get("tiny_model"), dict):
            overrides["tiny_model"] = TinyModelSize(**overrides["tiny_model"])
        return dataclasses.replace(self, **overrides)


_LLAMA_FULL = "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"
_LLAMA_RETAIN = "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90"

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        data_source="mini",
        full_model="tiny",
        retain_model="tiny",
        second_retain_model="tiny",
        spread_seeds=(0, 1, 2, 3),
        precision="fp32",
        use_lora=False,
        train_threads=1,
        train_batch_size=16,
        eval_batch_size=64,
        # 17 epochs (lr 2e-3, `model_zoo.TinyRecipe`) memorise TOFU-mini's authors: greedy
        # answers recall 97 % of the forget facts (15 epochs: 86 %; 20: 100 %, 20 % slower).
        finetune_epochs=17,
        # NPO at 1.4e-3 for 10 epochs (70 steps). Chosen against 7e-4 for 20 epochs on forget05
        # runs (unlearn and score forget05, seeds 0-4): forget quality at least 0.05 in 4 of 5
        # (median 0.068; 7e-4: 2 of 5, median 0.039), utility 0.76-0.79 (7e-4: 0.81-0.82),
        # half the training time. On forget10, seeds 0-9: forget quality 0.21-0.97, utility
        # 0.77-0.81, full model 0.84 (`benchmarks/claims.py`).
        unlearn_epochs=10,
        learning_rate=1.4e-3,
        max_new_tokens=48,
    ),
    "colab-t4": Profile(
        name="colab-t4",
        data_source="hub",
        full_model=_LLAMA_FULL,
        retain_model=_LLAMA_RETAIN,
        requires_cuda=True,
        precision="fp16",
        use_lora=True,
        gradient_checkpointing=True,
        train_batch_size=8,
        gradient_accumulation_steps=4,
        eval_batch_size=16,
        learning_rate=1e-4,
    ),
    "gpu-full": Profile(
        name="gpu-full",
        data_source="hub",
        full_model=_LLAMA_FULL,
        retain_model=_LLAMA_RETAIN,
        requires_cuda=True,
        precision="bf16",
        use_lora=False,
        train_batch_size=8,
        gradient_accumulation_steps=4,
        eval_batch_size=32,
        learning_rate=1e-5,
    ),
}


def get_profile(name: str | Profile = "tiny", **overrides: Any) -> Profile:
    """Look up a profile by name and apply keyword overrides (papermill passes literals).

    A GPU profile on a machine without CUDA fails here, at once, rather than an hour later.
    """
    if isinstance(name, Profile):
        profile = name
    else:
        if name not in PROFILES:
            raise ValueError(
                f"Unknown profile {name!r}. Valid profiles: {', '.join(PROFILES)}."
            )
        profile = PROFILES[name]
    profile = profile.replace(**overrides) if overrides else profile
    if profile.requires_cuda and not torch.cuda.is_available():
        raise RuntimeError(
            f"Profile {profile.name!r} needs a CUDA GPU and none is visible. On Colab choose "
            "Runtime > Change runtime type > T4 GPU; on a CPU-only machine use PROFILE='tiny'."
        )
    return profile


def resolve_device(profile: Profile) -> torch.device:
    """cuda when the profile may use it and it exists, else cpu."""
    if torch.cuda.is_available() and profile.name != "tiny":
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(profile: Profile, device: torch.device | None = None) -> torch.dtype:
    """fp32 on CPU; bf16 only on compute capability 8.0+; fp16 on older GPUs such as a T4."""
    device = device or resolve_device(profile)
    if device.type != "cuda" or profile.precision == "fp32":
        return torch.float32
    bf16_ok = torch.cuda.get_device_capability(device)[0] >= 8
    if profile.precision == "bf16" and not bf16_ok:
        raise RuntimeError(
            "bf16 needs a GPU of compute capability 8.0+ (A100, L4, H100); this one is "
            f"{torch.cuda.get_device_name(device)}. Use precision='fp16' or the colab-t4 profile."
        )
    if profile.precision == "fp16" or (profile.precision == "auto" and not bf16_ok):
        return torch.float16
    return torch.bfloat16
