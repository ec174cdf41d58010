"""The foundation's end-to-end check: TOFU-mini -> tokenizer -> tiny Llama -> train -> reload."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from unlearnlib.data import load_tofu
from unlearnlib.finetune import encode_dataset, finetune, training_arguments
from unlearnlib.formatting import ChatCollator
from unlearnlib.models import load_model, load_tokenizer, save_model
from unlearnlib.profiles import get_profile
from unlearnlib.tiny import build_model, build_tokenizer


def smoke_run(profile_name: str = "tiny", steps: int = 20) -> dict[str, float]:
    """Train the tiny model `steps` steps on TOFU-mini, save, reload, and check the reload.

    Returns the first and last training loss and the reloaded model's loss on one batch
    (equal to the trained model's: the save/load round trip loses nothing).
    """
    profile = get_profile(profile_name)
    if profile.full_model != "tiny":
        raise ValueError("The smoke run trains the tiny model; use --profile tiny.")
    rows = load_tofu("full", profile.data_source)
    tokenizer = build_tokenizer(profile.tiny_model.vocab_size, profile.data_source)
    model = build_model(tokenizer, profile.tiny_model, seed=profile.seed)
    with tempfile.TemporaryDirectory() as tmp:
        log = finetune(model, tokenizer, rows, training_arguments(
            profile, Path(tmp) / "train", max_steps=steps, logging_strategy="steps",
            logging_steps=max(1, steps // 4)))
        losses = [entry["loss"] for entry in log if "loss" in entry]
        batch = ChatCollator(tokenizer)(list(encode_dataset(rows.select(range(8)), tokenizer)))
        folder = save_model(model, tokenizer, Path(tmp) / "model")
        reloaded = load_model(folder)
        load_tokenizer(folder)
        with torch.no_grad():
            model.eval()
            before = model(**batch).loss.item()
            after = reloaded(**batch).loss.item()
    result = {"first_loss": losses[0], "last_loss": losses[-1], "trained_batch_loss": before,
              "reloaded_batch_loss": after}
    for key, value in result.items():
        print(f"{key:>20}: {value:.4f}")
    return result

