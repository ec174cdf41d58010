"""Fake 4-bit RTN quantisation: 16 levels a group, half-step error, head and embeddings kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnlib.audit.quantize import (
    fake_quantize_,
    fake_quantize_weight,
    fake_quantized_copy,
    quantizable_linears,
)


def _groups(weight: torch.Tensor, group_size: int) -> list[torch.Tensor]:
    """Each quantisation group: one row of one block of `group_size` input columns."""
    return [row for block in torch.split(weight, group_size, dim=1) for row in block]


def _max_levels(weight: torch.Tensor, group_size: int) -> int:
    """The largest number of distinct values in any group (vectorised over rows)."""
    counts = [1 + (block.sort(dim=1).values.diff(dim=1) != 0).sum(dim=1)
              for block in torch.split(weight, group_size, dim=1)]
    return int(torch.cat(counts).max())


def _half_steps(group: torch.Tensor, bits: int = 4) -> float:
    return float((group.max().clamp(min=0) - group.min().clamp(max=0)) / (2**bits - 1) / 2)


@pytest.mark.parametrize(("in_features", "group_size"), [(300, 128), (64, 128), (512, 128),
                                                          (96, 32)])
def test_levels_and_error_per_group(in_features: int, group_size: int) -> None:
    torch.manual_seed(0)
    weight = torch.randn(12, in_features) * torch.linspace(0.01, 3.0, 12)[:, None]
    quantized = fake_quantize_weight(weight, bits=4, group_size=group_size)
    assert quantized.shape == weight.shape and quantized.dtype == weight.dtype
    originals, rounded = _groups(weight, group_size), _groups(quantized, group_size)
    assert len(originals) == 12 * -(-in_features // group_size)
    assert _max_levels(quantized, group_size) <= 16
    for original, group in zip(originals, rounded, strict=True):
        assert (original - group).abs().max() <= _half_steps(original) * (1 + 1e-5)
    assert not torch.equal(quantized, weight)  # rounding happened


def test_ragged_last_group_is_its_own_group() -> None:
    # The last 4 inputs (one group of their own) are tiny: a shared 128-wide group would round
    # them all to 0; their own group keeps them to within 1/30 of their range.
    weight = torch.cat([torch.full((1, 128), 5.0), torch.tensor([[0.01, 0.02, -0.01, 0.015]])], 1)
    quantized = fake_quantize_weight(weight)
    tail = quantized[0, 128:]
    assert (tail != 0).all()
    assert torch.allclose(tail, weight[0, 128:], atol=0.03 / 30 + 1e-7)


def test_zero_stays_exact_and_all_zero_groups_survive() -> None:
    weight = torch.tensor([[0.0, 0.3, -0.7, 1.1], [0.0, 0.0, 0.0, 0.0]])
    quantized = fake_quantize_weight(weight, group_size=4)
    assert quantized[0, 0] == 0 and torch.equal(quantized[1], weight[1])


def test_bf16_weight_keeps_its_dtype_and_levels() -> None:
    torch.manual_seed(1)
    weight = torch.randn(4, 256).to(torch.bfloat16)
    quantized = fake_quantize_weight(weight)
    assert quantized.dtype == torch.bfloat16
    assert _max_levels(quantized, 128) <= 16


def test_two_bits_means_four_levels() -> None:
    weight = torch.randn(3, 128, generator=torch.Generator().manual_seed(2))
    assert _max_levels(fake_quantize_weight(weight, bits=2), 128) == 4


def test_tiny_model_copy_keeps_head_embeddings_and_original(tiny_model, tiny_tokenizer) -> None:
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    quantized = fake_quantized_copy(tiny_model)
    # the original is untouched
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(value, before[name]), name
    # tied head = embeddings, neither quantised, tie intact in the copy
    embed = quantized.get_input_embeddings().weight
    assert quantized.get_output_embeddings().weight is embed
    assert torch.equal(embed, before["model.embed_tokens.weight"])
    names = quantizable_linears(quantized)
    n_layers = tiny_model.config.num_hidden_layers
    assert len(names) == 7 * n_layers and "lm_head" not in names
    for name, module in names.items():
        original = before[f"{name}.weight"]
        assert not torch.equal(module.weight, original), name
        assert _max_levels(module.weight, 128) <= 16, name
    # norms are untouched; the quantised model still runs
    for name, value in quantized.state_dict().items():
        if "norm" in name:
            assert torch.equal(value, before[name])
    ids = tiny_tokenizer("Who wrote it?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = quantized(ids).logits
        reference = tiny_model(ids).logits
    assert logits.shape == reference.shape and torch.isfinite(logits).all()
    assert not torch.equal(logits, reference)


def test_untied_head_is_skipped_and_in_place_returns_names() -> None:
    class TwoLayer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(50, 16)
            self.proj = nn.Linear(16, 16)
            self.tied_to_embed = nn.Linear(16, 50, bias=False)
            self.tied_to_embed.weight = self.embed.weight
            self.head = nn.Linear(16, 50, bias=False)

        def get_input_embeddings(self) -> nn.Module:
            return self.embed

        def get_output_embeddings(self) -> nn.Module:
            return self.head

    torch.manual_seed(3)
    model = TwoLayer()
    embed, head = model.embed.weight.clone(), model.head.weight.clone()
    assert fake_quantize_(model) == ["proj"]
    assert torch.equal(model.embed.weight, embed) and torch.equal(model.head.weight, head)
    assert _max_levels(model.proj.weight, 128) <= 16


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        fake_quantize_weight(torch.zeros(3))
    with pytest.raises(ValueError, match="positive"):
        fake_quantize_weight(torch.zeros(2, 2), group_size=0)
