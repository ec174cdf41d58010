"""Shared fixtures: the real TOFU copy beside the checkout, and the tiny tokenizer/model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_TOFU = REPO.parent / "shared" / "tofu"

# Tests never reach the network: an attempted download fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    """The real TOFU files (CI lays ../shared beside the clone)."""
    if not (SHARED_TOFU / "full.json").is_file():
        raise FileNotFoundError(f"The real TOFU copy is expected at {SHARED_TOFU}.")
    return SHARED_TOFU


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny profile's tokenizer, trained once per test session on TOFU-mini."""
    from unlearnlib.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    """An untrained tiny Llama (seeded), shared read-only by tests."""
    from unlearnlib.tiny import build_model

    return build_model(tiny_tokenizer).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run on one thread: the tiny model's matrices gain nothing from a second one, and on a
    shared 2-core machine two threads spin-wait on each other (measured 8x slower)."""
    from unlearnlib.models import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def noisy_tiny_model():
    """Factory of tiny Llamas with non-trivial weights (seeded noise): varied distributions."""
    return _noisy_tiny_model


def _noisy_tiny_model(tokenizer, seed: int, noise_seed: int):
    from unlearnlib.tiny import build_model

    model = build_model(tokenizer, seed=seed).eval()
    generator = torch.Generator().manual_seed(noise_seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.08 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="session")
def small_tofu(tmp_path_factory) -> Path:
    """TOFU-mini cut to its first 24 rows per file: the same layout, trained in seconds."""
    from unlearnlib.paths import shipped_tofu_mini_dir

    folder = tmp_path_factory.mktemp("small_tofu")
    for file in shipped_tofu_mini_dir().glob("*.json"):
        lines = file.read_text().splitlines(keepends=True)
        keep = lines if file.name == "tofu_layout.json" else lines[:24]
        (folder / file.name).write_text("".join(keep))
    return folder
