"""GPU memory of each course step for Llama-3.2-1B, computed from its parameter counts.

Nothing is downloaded: `llama_3_2_1b_config()` is the model's published configuration, the
model is built on PyTorch's meta device (shapes without storage) and its parameters counted:
1,235,814,400 (the LM head is tied to the embeddings). A step keeps on the GPU, at its peak,
in bytes (N parameters, A trainable LoRA parameters, b sequences of s tokens, hidden size h,
p bytes per value of the profile's precision: 2 for fp16/bf16, 4 for fp32):

    weights      models held x N x p (plus the LoRA adapters, A x 4: peft keeps them in fp32)
    gradients    trainable parameters x bytes of their dtype
    optimizer    AdamW's two states (exp_avg, exp_avg_sq) per trainable parameter, in its dtype
    activations  what the backward pass reads: 17 x s x b x h x p per layer (Korthikanti et
                 al. 2022: 34 sbh bytes for 16-bit activations; no attention-score term, as
                 SDPA never stores the scores). Gradient checkpointing keeps each layer's input
                 (s x b x h x p) plus one layer's full activations
    logits       answer positions only (`losses.answer_logits`): b x tokens x vocab x (p + 4),
                 the logits in the model's dtype plus their fp32 log-softmax
    kv_cache     2 (K and V) x layers x KV heads x head dim x tokens x b x p

The totals leave out the CUDA context (about 0.5 GiB), the allocator's fragmentation and
short-lived per-layer buffers: a step within a GiB or so of the card's memory may not fit.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unlearnlib.profiles import PROFILES, Profile

GIB = 2**30
#: Memory of the profiles' cards: a Colab T4 (16 GB, 15 GiB usable) and an H100 (80 GB).
GPU_MEMORY_GIB: dict[str, float] = {"colab-t4": 15.0, "gpu-full": 80.0}
#: A TOFU chat (question and answer under Llama-3's chat template) is about 256 tokens
#: padded, its answer about 64.
DEFAULT_SEQ_LEN = 256
DEFAULT_ANSWER_LEN = 64
#: Models the notebooks hold at once: 05 the retain, full and NPO models; 06 the same three.
EVALUATED_MODELS = 3
AUDITED_MODELS = 3

_PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
_ADAPTER_BYTES = 4  # peft keeps LoRA weights in fp32 on fp16/bf16 bases (autocast_adapter_dtype)


def llama_3_2_1b_config() -> LlamaConfig:
    """meta-llama/Llama-3.2-1B's config.json as a `LlamaConfig` (the course's models share it)."""
    return LlamaConfig(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True,
        max_position_embeddings=131072, rope_theta=500000.0,
        rope_scaling={"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                      "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    )


def meta_model(config: LlamaConfig) -> LlamaForCausalLM:
    """`LlamaForCausalLM(config)` on the meta device: every shape, no memory, no download."""
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def parameter_count(config: LlamaConfig) -> int:
    """N: the model's distinct parameters (tied embeddings count once)."""
    return sum(p.numel() for p in meta_model(config).parameters())


def lora_parameter_count(config: LlamaConfig, rank: int, target_modules: Sequence[str]) -> int:
    """A: the LoRA parameters peft adds, r x (in + out) per targeted linear layer."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(target_modules),
                      task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft calls a method transformers 5 renamed
        warnings.simplefilter("ignore", FutureWarning)
        model = get_peft_model(meta_model(config), lora)
    return model.get_nb_trainable_parameters()[0]


@dataclass(frozen=True)
class Memory:
    """Bytes on the GPU by component; `+` adds two things held at once."""

    weights: int = 0
    gradients: int = 0
    optimizer: int = 0
    activations: int = 0
    logits: int = 0
    kv_cache: int = 0

    def __add__(self, other: Memory) -> Memory:
        return Memory(*(a + b for a, b in zip(dataclasses.astuple(self),
                                              dataclasses.astuple(other), strict=True)))

    @property
    def total(self) -> int:
        """The sum of the components."""
        return sum(dataclasses.astuple(self))


class StepMemory(NamedTuple):
    """One phase of a course step and what it holds at its peak."""

    step: str
    phase: str
    memory: Memory
    note: str


def precision_bytes(profile: Profile) -> int:
    """p: bytes per value of the profile's precision on its GPU (inference weights,
    activations, logits, KV cache)."""
    if profile.precision not in _PRECISION_BYTES:
        raise ValueError(f"Profile {profile.name!r} has precision {profile.precision!r}, which "
                         "depends on the GPU; estimate with one of fp16, bf16, fp32.")
    return _PRECISION_BYTES[profile.precision]


def held_weights(n_params: int, dtype_bytes: int, models: int = 1) -> Memory:
    """Models kept for inference: models x N x p bytes of weights."""
    return Memory(weights=models * n_params * dtype_bytes)


def training_state(profile: Profile, n_params: int, n_lora: int) -> Memory:
    """Weights, gradients and AdamW states of the model `unlearn` trains under `profile`.

    * LoRA: the frozen base in the profile's precision (N x p) and the fp32 adapters (A x 4);
      gradients A x 4; AdamW 2 x A x 4. No master copies: the adapters already are fp32.
    * Full fine-tuning in bf16 or fp32: every weight trains in its own dtype of w bytes:
      N x w weights, N x w gradients, 2 x N x w AdamW (torch keeps the states in the
      parameter's dtype; no fp32 master copy).
    * Full fine-tuning in fp16: `unlearn.training_dtype` loads fp32 weights, the master copy,
      and the Trainer autocasts them: N x 4 + N x 2 (the fp16 copies autocast keeps for the
      backward pass), gradients N x 4, AdamW 2 x N x 4.
    """
    p = precision_bytes(profile)
    if profile.use_lora:
        return Memory(weights=n_params * p + n_lora * _ADAPTER_BYTES,
                      gradients=n_lora * _ADAPTER_BYTES, optimizer=2 * n_lora * _ADAPTER_BYTES)
    if profile.precision == "fp16":
        return Memory(weights=n_params * (4 + 2), gradients=n_params * 4,
                      optimizer=2 * n_params * 4)
    return Memory(weights=n_params * p, gradients=n_params * p, optimizer=2 * n_params * p)


def activation_bytes(config: LlamaConfig, batch: int, seq_len: int, dtype_bytes: int = 2,
                     checkpointing: bool = False) -> int:
    """Activations the backward pass needs: L x 17 x s x b x h x p (34 sbh per layer at 16
    bits), or with gradient checkpointing L x s x b x h x p (each layer's input) plus one
    layer's 17 x s x b x h x p, recomputed during the backward pass."""
    sbh = seq_len * batch * config.hidden_size * dtype_bytes
    layers = config.num_hidden_layers
    return sbh * (layers + 17) if checkpointing else 17 * sbh * layers


def logits_bytes(config: LlamaConfig, batch: int, tokens: int, dtype_bytes: int = 2) -> int:
    """Logits of `tokens` positions per sequence: b x tokens x vocab x (p + 4), the model's
    output in its dtype plus the fp32 log-softmax of the loss (`losses.answer_token_nll`,
    `likelihood._token_scores`)."""
    return batch * tokens * config.vocab_size * (dtype_bytes + 4)


def kv_cache_bytes(config: LlamaConfig, batch: int, tokens: int, dtype_bytes: int = 2) -> int:
    """KV cache of `tokens` positions: 2 x L x KV heads x head dim x tokens x b x p."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return (2 * config.num_hidden_layers * config.num_key_value_heads * head_dim
            * tokens * batch * dtype_bytes)


def course_steps(profile: Profile | str, config: LlamaConfig | None = None,
                 seq_len: int = DEFAULT_SEQ_LEN, answer_len: int = DEFAULT_ANSWER_LEN
                 ) -> list[StepMemory]:
    """The peak memory of every course step's phases on `profile` (Llama-3.2-1B by default).

    * evaluate (02, 05), generate: three models held (05: retain, full, NPO; 02 holds two)
      and the KV cache of an eval batch over the prompt (s - answer) and max_new_tokens.
    * evaluate, score: the three models; perturbed answers share their question's cached
      prompt, so one pass scores up to eval batch x s answer tokens: their logits, and the
      prompt's KV cache copied for each of the eval batch x s / answer rows
      (`likelihood._shared_chunks`).
    * unlearn (04): `training_state`, activations and answer logits of the forget batch
      (GA) or of the forget and retain batches in one graph (GradDiff, NPO, SimNPO), plus
      the retain model notebook 04 holds for its training curves. NPO's reference adds
      nothing: log-probs precomputed under full fine-tuning, the adapter switched off under
      LoRA.
    * audit (06), probes: the three audited models plus the fake-quantised copy
      (`quantize.fake_quantized_copy`), generating with the eval batch (the context probes'
      longer prompts come without the fourth model, and need less).
    * audit, relearn: the three models plus a copy LoRA-tuned on the train batch, on every
      profile, without gradient checkpointing (`probes.relearn_probes`).
    """
    profile = _lookup(profile)
    config = config or llama_3_2_1b_config()
    if not 0 < answer_len < seq_len:
        raise ValueError(f"answer_len must be between 1 and seq_len - 1 ({seq_len - 1}), "
                         f"got {answer_len}")
    p = precision_bytes(profile)
    n_params = parameter_count(config)
    n_lora = lora_parameter_count(config, profile.lora_rank, profile.lora_target_modules)
    eval_batch, train_batch = profile.eval_batch_size, profile.train_batch_size
    generated = seq_len - answer_len + profile.max_new_tokens
    score_rows = eval_batch * seq_len // answer_len

    def generate(models: int) -> Memory:
        return (held_weights(n_params, p, models)
                + Memory(kv_cache=kv_cache_bytes(config, eval_batch, generated, p)))

    def train(state: Profile, batch: int) -> Memory:
        return training_state(state, n_params, n_lora) + Memory(
            activations=activation_bytes(config, batch, seq_len, p, state.gradient_checkpointing),
            logits=logits_bytes(config, batch, answer_len, p))

    training = "LoRA" if profile.use_lora else f"full fine-tuning in {profile.precision}"
    if profile.gradient_checkpointing:
        training += ", gradient checkpointing"
    relearn = profile.replace(use_lora=True, gradient_checkpointing=False)
    return [
        StepMemory("evaluate (02, 05)", "generate", generate(EVALUATED_MODELS),
                   f"retain, full and NPO held (02: two); KV cache of {eval_batch} x "
                   f"{generated} tokens"),
        StepMemory("evaluate (02, 05)", "score", held_weights(n_params, p, EVALUATED_MODELS)
                   + Memory(logits=logits_bytes(config, score_rows, answer_len, p),
                            kv_cache=kv_cache_bytes(config, score_rows, seq_len, p)),
                   f"perturbed answers: {score_rows} per pass, each with its prompt's cache"),
        StepMemory("unlearn: GA (04)", "train",
                   train(profile, train_batch) + held_weights(n_params, p),
                   f"{training}; forget batch {train_batch}; + the retain model (curves)"),
        StepMemory("unlearn: GradDiff / NPO / SimNPO (04, 07)", "train",
                   train(profile, 2 * train_batch) + held_weights(n_params, p),
                   f"{training}; forget + retain batches; NPO's reference needs no second "
                   "model; + the retain model (curves)"),
        StepMemory("audit (06)", "probes", generate(AUDITED_MODELS + 1),
                   "full, retain, NPO + the fake-quantised copy"),
        StepMemory("audit (06)", "relearn",
                   held_weights(n_params, p, AUDITED_MODELS) + train(relearn, train_batch),
                   f"full, retain, NPO + a LoRA copy (rank {profile.lora_rank}, no "
                   "checkpointing) on every profile"),
    ]


def course_memory_table(profile_names: Sequence[Profile | str] = ("colab-t4", "gpu-full"),
                        seq_len: int = DEFAULT_SEQ_LEN, answer_len: int = DEFAULT_ANSWER_LEN,
                        config: LlamaConfig | None = None) -> pd.DataFrame:
    """One row per (profile, step, phase): each component in GiB, the total, the card's memory
    (`GPU_MEMORY_GIB`) and whether the total fits in it (see `course_steps`)."""
    rows = []
    for name in profile_names:
        profile = _lookup(name)
        if profile.name not in GPU_MEMORY_GIB:
            raise ValueError(f"Memory estimates are for the GPU profiles "
                             f"({', '.join(GPU_MEMORY_GIB)}), not {profile.name!r}.")
        card = GPU_MEMORY_GIB[profile.name]
        for step in course_steps(profile, config, seq_len, answer_len):
            parts = dataclasses.asdict(step.memory)
            total = step.memory.total / GIB
            rows.append({"profile": profile.name, "step": step.step, "phase": step.phase,
                         **{f"{part}_gib": value / GIB for part, value in parts.items()},
                         "total_gib": total, "gpu_gib": card, "fits": total <= card,
                         "note": step.note})
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """A GitHub markdown table (numbers right-aligned to `digits` decimals, booleans yes/no)."""
    def cell(value: object) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    numeric = [pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])
               for c in table.columns]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in table.astype(object).itertuples(index=False)]
    return "\n".join(lines)


def _lookup(profile: Profile | str) -> Profile:
    """A profile by name, without `get_profile`'s CUDA check: estimates run on any machine."""
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILES)}.")
    return PROFILES[profile]
