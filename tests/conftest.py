"""Shared fixtures: the real TOFU copy beside the checkout, and the tiny tokenizer/model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from shared import SHARED_TOFU

# Tests never reach the network: an attempted download fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def pytest_report_header() -> list[str]:
    """One line at the top when ../shared is missing, instead of only one error per test."""
    if (SHARED_TOFU / "full.json").is_file():
        return []
    return [f"The real TOFU copy is missing at {SHARED_TOFU}: the tests that read it or its "
            "published eval logs will fail. CI lays ../shared beside the clone."]


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    """The real TOFU files (CI lays ../shared beside the clone)."""
    if not (SHARED_TOFU / "full.json").is_file():
        raise FileNotFoundError(f"The real TOFU copy is expected at {SHARED_TOFU}.")
    return SHARED_TOFU


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny profile's tokenizer, trained once per test session on TOFU-mini."""
    from unlearnlib.models.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def llama3_tokenizer():
    """The real Llama-3 tokenizer, built once per session from the llama-models package."""
    from unlearnlib.models.llama3_tokenizer import build_llama3_tokenizer

    return build_llama3_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    """An untrained tiny Llama (seeded), shared read-only by tests."""
    from unlearnlib.models.tiny import build_model

    return build_model(tiny_tokenizer).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run on one thread: the tiny model's matrices gain nothing from a second one, and on a
    shared 2-core machine two threads spin-wait on each other (measured 8x slower)."""
    from unlearnlib.models.loading import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def noisy_tiny_model():
    """Factory of tiny Llamas with non-trivial weights (seeded noise): varied distributions."""
    return _noisy_tiny_model


def _noisy_tiny_model(tokenizer, seed: int, noise_seed: int):
    from unlearnlib.models.tiny import build_model

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


@pytest.fixture(scope="session")
def memorised_model(tmp_path_factory):
    """Factory: a fresh tiny Llama (seed 0) trained on some facts' question-answer pairs
    (40 epochs at lr 3e-3) until it knows them; returned in eval mode."""

    def train(tokenizer, rows):
        import datasets

        from unlearnlib.models.tiny import build_model
        from unlearnlib.profiles import get_profile
        from unlearnlib.train.finetune import finetune
        from unlearnlib.train.trainer import training_arguments

        model = build_model(tokenizer, seed=0)
        args = training_arguments(get_profile("tiny", train_batch_size=8),
                                  tmp_path_factory.mktemp("train"), num_train_epochs=40,
                                  learning_rate=3e-3, logging_strategy="no")
        data = datasets.Dataset.from_pandas(rows[["question", "answer"]], preserve_index=False)
        finetune(model, tokenizer, data, args)
        return model.eval()

    return train


#: A one-layer Llama of width 16: tests of caching and plumbing, not of quality.
MICRO_SIZE = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32)


@pytest.fixture()
def micro(small_tofu):
    """The tiny profile shrunk to a micro Llama trained one epoch on `small_tofu`."""
    from unlearnlib.profiles import TinyModelSize, TinyRecipe, get_profile

    return get_profile("tiny", tiny_model=TinyModelSize(**MICRO_SIZE), finetune_epochs=1,
                       train_batch_size=8, data_source=str(small_tofu),
                       tiny_recipe=TinyRecipe(base_epochs=1))


