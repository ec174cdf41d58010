"""Fake 4-bit quantisation: does rounding the weights bring forgotten facts back?

Zhang et al. 2024 ("Catastrophic failure of LLM unlearning via quantization") found that
unlearning often moves weights by less than a 4-bit quantisation step, so quantising the
unlearned model lands it back near the original. Here every `nn.Linear` weight except the
LM head is replaced by its round-to-nearest (RTN) 4-bit value, in float: the model runs as
before, only its weights take at most 16 values per group.

Scheme (GPTQ's `Quantizer`, the RTN baseline of the GPTQ and AWQ papers): asymmetric
min-max per group of `group_size` consecutive input features of one output row, the range
widened to include 0 so that zero stays exact,

    scale = (max(w_max, 0) - min(w_min, 0)) / (2^bits - 1),   zero = round(-min(w_min, 0) / scale)
    q = clamp(round(w / scale) + zero, 0, 2^bits - 1),          w_hat = (q - zero) * scale

so |w - w_hat| <= scale / 2. A row whose length is not a multiple of `group_size` ends with a
shorter group; a row shorter than `group_size` is one group. The arithmetic is float32 and
the result is cast back to the weight's dtype (bf16/fp16 add their own rounding on top).

The embeddings are never touched, and neither is the LM head: Llama-3.2-1B (and the tiny
model) tie the head to the input embeddings, so quantising one would silently quantise
the other. Any linear layer sharing its weight with either is skipped too.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fake_quantize_weight(weight: torch.Tensor, bits: int = 4,
                         group_size: int = 128) -> torch.Tensor:
    """The RTN fake-quantised copy of a 2-D weight [out_features, in_features] (see module)."""
    if weight.dim() != 2:
        raise ValueError(f"Expected a 2-D linear weight, got shape {tuple(weight.shape)}.")
    if bits < 1 or group_size < 1:
        raise ValueError(f"bits and group_size must be positive, got {bits} and {group_size}.")
    levels = 2**bits - 1
    w = weight.detach().float()
    pieces = []
    for group in torch.split(w, group_size, dim=1):
        low = group.amin(dim=1, keepdim=True).clamp(max=0.0)
        high = group.amax(dim=1, keepdim=True).clamp(min=0.0)
        scale = (high - low) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group
        zero = torch.round(-low / scale)
        q = torch.clamp(torch.round(group / scale) + zero, 0, levels)
        pieces.append((q - zero) * scale)
    return torch.cat(pieces, dim=1).to(weight.dtype)


def quantizable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Every nn.Linear of the model except the LM head and any layer tied to the embeddings."""
    excluded = set()
    for getter in ("get_output_embeddings", "get_input_embeddings"):
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            excluded.add(module.weight.data_ptr())
    return {name: module for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and module.weight.data_ptr() not in excluded}


@torch.no_grad()
def fake_quantize_(model: nn.Module, bits: int = 4, group_size: int = 128) -> list[str]:
    """Quantise the model's linear weights IN PLACE (no extra memory); returns their names.

    The original weights are lost: reload the model, or use `fake_quantized_copy`.
    """
    linears = quantizable_linears(model)
    for module in linears.values():
        module.weight.copy_(fake_quantize_weight(module.weight, bits, group_size))
    return list(linears)


def fake_quantized_copy(model: nn.Module, bits: int = 4, group_size: int = 128) -> nn.Module:
    """A quantised deep copy (the original is untouched; costs one more model in memory)."""
    quantized = copy.deepcopy(model)
    fake_quantize_(quantized, bits, group_size)
    return quantized
