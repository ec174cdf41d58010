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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unlearnlib.profiles import PROFILES, Profile, get_profile
from unlearnlib.train.prepare import add_lora, lora_config

GIB = 2**30
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


def lora_parameter_count(config: LlamaConfig, profile: Profile) -> int:
    """A: the LoRA parameters the profile's adapter adds (`prepare.lora_config`),
    r x (in + out) per targeted linear layer."""
    model = add_lora(meta_model(config), lora_config(profile))
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
    * Full fine-tuning in fp16: `profiles.resolve_dtype(training=True)` loads fp32 weights,
      the master copy, and the Trainer autocasts them: N x 4 + N x 2 (the fp16 copies
      autocast keeps for the backward pass), gradients N x 4, AdamW 2 x N x 4.
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


@dataclass(frozen=True)
class _Shapes:
    """What every step's estimate shares: the profile, the model's sizes (p: bytes per value
    of its precision, N and A parameters) and the batch shapes."""

    profile: Profile
    config: LlamaConfig
    seq_len: int
    answer_len: int
    p: int
    n_params: int
    n_lora: int

    @property
    def eval_batch(self) -> int:
        return self.profile.eval_batch_size

    @property
    def train_batch(self) -> int:
        return self.profile.train_batch_size

    @property
    def generated(self) -> int:
        """Tokens of a generating row: the prompt (s - answer) and max_new_tokens."""
        return self.seq_len - self.answer_len + self.profile.max_new_tokens

    @property
    def score_rows(self) -> int:
        """Answer rows of one prompt-sharing scoring pass (`likelihood._shared_chunks`)."""
        return self.eval_batch * self.seq_len // self.answer_len

    def held(self, models: int = 1) -> Memory:
        """Models kept for inference."""
        return held_weights(self.n_params, self.p, models)

    def generate(self, models: int) -> Memory:
        """`models` held, generating an eval batch."""
        return self.held(models) + Memory(
            kv_cache=kv_cache_bytes(self.config, self.eval_batch, self.generated, self.p))

    def train(self, state: Profile, batch: int) -> Memory:
        """Training under `state` on `batch` sequences: state, activations, answer logits."""
        return training_state(state, self.n_params, self.n_lora) + Memory(
            activations=activation_bytes(self.config, batch, self.seq_len, self.p,
                                         state.gradient_checkpointing),
            logits=logits_bytes(self.config, batch, self.answer_len, self.p))


def _evaluate_steps(shapes: _Shapes) -> list[StepMemory]:
    """Notebooks 02 and 05: generating answers, then scoring the perturbed sets."""
    rows = shapes.score_rows
    score = shapes.held(EVALUATED_MODELS) + Memory(
        logits=logits_bytes(shapes.config, rows, shapes.answer_len, shapes.p),
        kv_cache=kv_cache_bytes(shapes.config, rows, shapes.seq_len, shapes.p))
    return [
        StepMemory("evaluate (02, 05)", "generate", shapes.generate(EVALUATED_MODELS),
                   f"retain, full and NPO held (02: two); KV cache of {shapes.eval_batch} x "
                   f"{shapes.generated} tokens"),
        StepMemory("evaluate (02, 05)", "score", score,
                   f"perturbed answers: {rows} per pass, each with its prompt's cache"),
    ]


def _unlearn_steps(shapes: _Shapes) -> list[StepMemory]:
    """Notebooks 04 and 07: one forget batch (GA) or a forget and a retain batch in a graph."""
    profile, batch = shapes.profile, shapes.train_batch
    training = "LoRA" if profile.use_lora else f"full fine-tuning in {profile.precision}"
    if profile.gradient_checkpointing:
        training += ", gradient checkpointing"
    return [
        StepMemory("unlearn: GA (04)", "train",
                   shapes.train(profile, batch) + shapes.held(),
                   f"{training}; forget batch {batch}; + the retain model (curves)"),
        StepMemory("unlearn: GradDiff / NPO / SimNPO (04, 07)", "train",
                   shapes.train(profile, 2 * batch) + shapes.held(),
                   f"{training}; forget + retain batches; NPO's reference needs no second "
                   "model; + the retain model (curves)"),
    ]


def _audit_steps(shapes: _Shapes) -> list[StepMemory]:
    """Notebook 06: the probes (with a fake-quantised copy) and the relearning probe."""
    relearn = shapes.profile.replace(use_lora=True, gradient_checkpointing=False)
    return [
        StepMemory("audit (06)", "probes", shapes.generate(AUDITED_MODELS + 1),
                   "full, retain, NPO + the fake-quantised copy"),
        StepMemory("audit (06)", "relearn",
                   shapes.held(AUDITED_MODELS) + shapes.train(relearn, shapes.train_batch),
                   f"full, retain, NPO + a LoRA copy (rank {shapes.profile.lora_rank}, no "
                   "checkpointing) on every profile"),
    ]


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
    profile = get_profile(profile, check_cuda=False)
    config = config or llama_3_2_1b_config()
    if not 0 < answer_len < seq_len:
        raise ValueError(f"answer_len must be between 1 and seq_len - 1 ({seq_len - 1}), "
                         f"got {answer_len}")
    shapes = _Shapes(profile, config, seq_len, answer_len, precision_bytes(profile),
                     parameter_count(config),
                     lora_parameter_count(config, profile))
    return [*_evaluate_steps(shapes), *_unlearn_steps(shapes), *_audit_steps(shapes)]


def course_memory_table(profile_names: Sequence[Profile | str] = ("colab-t4", "gpu-full"),
                        seq_len: int = DEFAULT_SEQ_LEN, answer_len: int = DEFAULT_ANSWER_LEN,
                        config: LlamaConfig | None = None) -> pd.DataFrame:
    """One row per (profile, step, phase): each component in GiB, the total, the card's memory
    (`Profile.gpu_memory_gib`) and whether the total fits in it (see `course_steps`)."""
    rows = []
    for name in profile_names:
        profile = get_profile(name, check_cuda=False)
        card = profile.gpu_memory_gib
        if card is None:
            gpu = [p.name for p in PROFILES.values() if p.gpu_memory_gib is not None]
            raise ValueError(f"Memory estimates are for the GPU profiles ({', '.join(gpu)}), "
                             f"not {profile.name!r}.")
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
