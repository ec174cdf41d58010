"""The three scales of the course as plain typed objects: `tiny`, `colab-t4`, `gpu-full`.

A profile fixes everything that legitimately differs between a laptop CPU and a GPU:
data source, models, LoRA or full fine-tuning, precision, batch sizes, epochs, the
generation length, the audit's knobs, the tiny models' recipe and the GPU's memory.
Everything else is the same code path at every scale, and no code tests a profile's name:
what differs is a field here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

Precision = Literal["auto", "fp32", "fp16", "bf16"]
#: The model source that means "the course's own tiny model", trained on TOFU-mini (or shipped).
COURSE_MODEL = "tiny"


def _replace_checked(config: Any, overrides: dict[str, Any]) -> Any:
    """`dataclasses.replace`, but unknown field names raise with the valid ones."""
    valid = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"{type(config).__name__} has no field(s) {unknown}. "
                        f"Valid fields: {', '.join(sorted(valid))}")
    return dataclasses.replace(config, **overrides)


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
class TinyRecipe:
    """How the tiny models are trained, beyond the profile's batch size, epochs and seed."""

    #: Peak learning rate of the fine-tunes (linear warm-up, then linear decay to 0).
    learning_rate: float = 2e-3
    #: Share of the steps spent warming up.
    warmup: float = 0.05
    #: Epochs of the base model on `general_knowledge` (120 rows: cheap).
    base_epochs: int = 30
    #: Replay `general_knowledge` while fine-tuning full and retain (keeps model utility).
    replay_general_knowledge: bool = True
    #: Seed of the initial weights and the data order. The profile's own seed drives
    #: unlearning, so a run with another profile seed starts from the same models.
    seed: int = 0

    def replace(self, **overrides: Any) -> TinyRecipe:
        """A copy with some fields changed; unknown names raise with the valid ones."""
        return _replace_checked(self, overrides)


@dataclass(frozen=True)
class AuditSettings:
    """The knobs of the leak audit's probe families (defaults: a GPU-sized audit)."""

    #: best_of_n: samples per question, temperature and nucleus top-p.
    n_samples: int = 16
    temperature: float = 1.0
    top_p: float = 0.95
    #: context: other QA pairs of the author placed before the question.
    n_context: int = 3
    #: logit_lens: a layer recalls when the span's first token ranks below this.
    lens_top_k: int = 5
    #: quantised: round-to-nearest bits and group size (LM head excluded).
    quant_bits: int = 4
    quant_group_size: int = 128
    #: relearn: LoRA epochs and learning rate on half of the forget authors (the GPU values
    #: are a usual LoRA choice, not yet tuned on Llama-3.2-1B).
    relearn_epochs: float = 3.0
    relearn_learning_rate: float = 2e-4
    #: leak_table: bootstrap resamples of the authors.
    n_bootstrap: int = 1000
    #: Audit only each author's first N forget facts (None: all of them), for a quick look.
    facts_per_author: int | None = None

    def replace(self, **overrides: Any) -> AuditSettings:
        """A copy with some fields changed; unknown names raise with the valid ones."""
        return _replace_checked(self, overrides)


@dataclass(frozen=True)
class Profile:
    """One scale of the course. Override any field with `get_profile(name, field=value)`."""

    name: str
    #: "mini" (TOFU-mini, shipped), "hub" (locuslab/TOFU) or a local folder in the Hub layout.
    data_source: str
    #: Model to unlearn from and the retain reference: Hub ids, local folders, or "tiny"
    #: (`COURSE_MODEL`: trained by the course itself on TOFU-mini, or shipped).
    full_model: str
    retain_model: str
    forget_split: str = "forget10"
    requires_cuda: bool = False
    #: Run on a GPU when one is visible. The tiny profile stays on the CPU even then, so its
    #: numbers are the ones the course's checked outputs hold.
    use_gpu: bool = True
    #: Memory of the GPU the profile is sized for (GiB), for `unlearnlib memory`; None: no GPU.
    gpu_memory_gib: float | None = None
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
    #: Keep the first N rows of every evaluation split (None: all): a quick look, or the
    #: CPU rehearsal of a GPU profile (`course.rehearsal`). Fewer rows, less certain scores.
    eval_max_samples: int | None = None
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
    #: The unlearned model notebooks 05 and 06 score and audit (a Hub id or folder); None: the
    #: course's own NPO model (notebook 04). The GPU profiles audit the published seed.
    audited_model: str | None = None
    #: Where notebook 05 finds open-unlearning's published evaluation logs, to score the
    #: audited model against the published retain log: "hub" or a local copy of their folder;
    #: None where there are none (the tiny models have no published logs).
    published_logs: str | None = None
    #: A second retain model (another seed) for the noise floor of forget quality, or None
    #: where none is published. "tiny": the course's own, shipped with the package.
    second_retain_model: str | None = None
    tiny_model: TinyModelSize = field(default_factory=TinyModelSize)
    #: How the tiny models are trained (learning rate, warm-up, base epochs, replay, seed).
    tiny_recipe: TinyRecipe = field(default_factory=TinyRecipe)
    #: The leak audit's knobs (notebook 06, `unlearnlib audit`).
    audit: AuditSettings = field(default_factory=AuditSettings)

    def replace(self, **overrides: Any) -> Profile:
        """A copy with some fields changed; unknown names raise with the valid ones.

        The nested settings take a dict of their own fields (papermill passes literals).
        """
        for name in ("lora_target_modules", "spread_seeds"):
            if name in overrides:
                overrides[name] = tuple(overrides[name])
        for name in ("tiny_model", "tiny_recipe", "audit"):
            if isinstance(overrides.get(name), dict):
                overrides[name] = _replace_checked(getattr(self, name), overrides[name])
        return _replace_checked(self, overrides)

    @property
    def trains_own_models(self) -> bool:
        """Whether the course trains (or ships) this profile's full and retain models."""
        return COURSE_MODEL in (self.full_model, self.retain_model)


_LLAMA_FULL = "open-unlearning/tofu_Llama-3.2-1B-Instruct_full"
_LLAMA_RETAIN = "open-unlearning/tofu_Llama-3.2-1B-Instruct_retain90"
#: The seed checkpoint: NPO on forget10 from the full model above (10 epochs, lr 5e-5,
#: alpha 1, beta 0.1); its card reports forget quality 0.967 and model utility 0.548.
SEED_MODEL = "Naahraf27/npo_llama-3.2-1b-instruct_forget10_ep10_lr5e-5_alpha1.0_beta0.1"

PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny",
        data_source="mini",
        full_model="tiny",
        retain_model="tiny",
        second_retain_model="tiny",
        use_gpu=False,
        spread_seeds=(0, 1, 2, 3),
        precision="fp32",
        use_lora=False,
        train_threads=1,
        train_batch_size=16,
        eval_batch_size=64,
        # Enough epochs (at `TinyRecipe`'s lr) for the full model to memorise TOFU-mini's
        # authors (notebook 02 checks that its greedy answers recall them better than retain).
        finetune_epochs=17,
        # NPO's recipe, chosen on forget05 runs (README, "Same start, claims that hold for any
        # seed" says how and what it gives on forget10; `benchmarks/claims.py` measures it).
        unlearn_epochs=10,
        learning_rate=1.4e-3,
        max_new_tokens=48,
        # Eight samples keep the audit of three models near a minute on one CPU core; LoRA
        # teaches the tiny model only at a high learning rate (a rank-8 adapter on q and v
        # learns at 3e-3, and it still hurts the retain facts).
        audit=AuditSettings(n_samples=8, relearn_epochs=5.0, relearn_learning_rate=3e-3),
    ),
    "colab-t4": Profile(
        name="colab-t4",
        data_source="hub",
        full_model=_LLAMA_FULL,
        retain_model=_LLAMA_RETAIN,
        audited_model=SEED_MODEL,
        published_logs="hub",
        requires_cuda=True,
        gpu_memory_gib=15.0,
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
        audited_model=SEED_MODEL,
        published_logs="hub",
        requires_cuda=True,
        gpu_memory_gib=80.0,
        precision="bf16",
        use_lora=False,
        train_batch_size=8,
        gradient_accumulation_steps=4,
        eval_batch_size=32,
        learning_rate=1e-5,
    ),
}


def get_profile(name: str | Profile = "tiny", check_cuda: bool = True,
                **overrides: Any) -> Profile:
    """Look up a profile by name and apply keyword overrides (papermill passes literals).

    A GPU profile on a machine without CUDA fails here, at once, rather than an hour later
    (`check_cuda=False` skips that, for estimates such as `unlearnlib memory`).
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
    if check_cuda and profile.requires_cuda and not torch.cuda.is_available():
        raise RuntimeError(
            f"Profile {profile.name!r} needs a CUDA GPU and none is visible. On Colab choose "
            "Runtime > Change runtime type > T4 GPU; on a CPU-only machine use PROFILE='tiny'."
        )
    return profile


def resolve_device(profile: Profile) -> torch.device:
    """cuda when the profile may use it and it exists, else cpu. Under torchrun or
    `accelerate launch` (LOCAL_RANK set) each process gets its own GPU."""
    if torch.cuda.is_available() and profile.use_gpu:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def resolve_dtype(profile: Profile, device: torch.device | None = None,
                  training: bool = False) -> torch.dtype:
    """fp32 on CPU; bf16 only on compute capability 8.0+; fp16 on older GPUs such as a T4.

    `training=True` gives the dtype to load weights in for training: fp16 training keeps
    fp32 master weights (the Trainer's `fp16=True` autocasts and scales the loss), except
    under LoRA, where the frozen base may be fp16 and peft keeps the trainable adapter in
    fp32. bf16 trains bf16 weights directly, as open-unlearning does.
    """
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
        return torch.float32 if training and not profile.use_lora else torch.float16
    return torch.bfloat16
