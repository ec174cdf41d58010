"""Stand-in Llama-3.2-1B models: the real architecture and tokenizer, random weights.

The course's GPU path runs Llama-3.2-1B-Instruct fine-tuned on TOFU. A stand-in lets that
path run where the checkpoint cannot be downloaded: ``1b`` has the checkpoint's exact config
(1,235,814,400 parameters, for measuring memory and time per step), ``small`` the same
tokenizer, vocabulary, rope scaling and grouped-query attention in CPU-sized layers (for
rehearsing every step on real TOFU in CI). Random weights make the metrics meaningless; what
a stand-in checks is that each step runs with real token counts and the real chat format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from unlearnlib.models.llama3_tokenizer import MODEL_MAX_LENGTH, build_llama3_tokenizer
from unlearnlib.models.loading import save_model

StandinSize = Literal["1b", "small"]

#: Layer shapes per size; everything else is Llama-3.2-1B's config.
STANDIN_LAYERS: dict[str, dict[str, int]] = {
    "1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8},
    "small": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2},
}

#: Llama-3.2's rotary embedding: llama3 frequency scaling of a 500k base.
ROPE_THETA = 500000.0
ROPE_SCALING = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
#: The Instruct model stops at <|end_of_text|>, <|eom_id|> or <|eot_id|>.
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")


def standin_config(size: StandinSize, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """Llama-3.2-1B(-Instruct)'s config with the layer shapes of `size` ("1b" or "small")."""
    if size not in STANDIN_LAYERS:
        raise ValueError(f"size must be one of {list(STANDIN_LAYERS)}, not {size!r}")
    return LlamaConfig(
        vocab_size=len(tokenizer), **STANDIN_LAYERS[size],
        max_position_embeddings=MODEL_MAX_LENGTH, rms_norm_eps=1e-5,
        rope_theta=ROPE_THETA, rope_scaling=dict(ROPE_SCALING), tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(list(STOP_TOKENS)),
    )


def write_standin(size: StandinSize, out: str | Path, seed: int = 0,
                  tokenizer: PreTrainedTokenizerFast | None = None) -> Path:
    """Write a randomly initialised (seeded) stand-in and the Llama-3 tokenizer to `out`.

    A `save_pretrained` folder in bf16 safetensors, as the Hub checkpoint is stored, that
    `loading.load_model` / `load_tokenizer` read like a Hub id. The ``1b`` needs about 5 GB of
    memory while it is written and 2.5 GB of disk.
    """
    tokenizer = tokenizer or build_llama3_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM._from_config(standin_config(size, tokenizer), dtype=torch.bfloat16)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return save_model(model, tokenizer, out)
