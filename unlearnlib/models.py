"""Load and save models and tokenizers: a Hub id or a local `save_pretrained` folder.

Weights load from safetensors only and never with `trust_remote_code`: a course should not
run code or unpickle files it downloaded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

TOKEN_ENV = "HF_TOKEN"


def hf_token() -> str | None:
    """The Hub token from $HF_TOKEN or Colab's secrets panel; never printed or stored."""
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return userdata.get(TOKEN_ENV)
    except Exception:  # secret missing or notebook access not granted
        return None


def _is_local(name_or_dir: str | Path) -> bool:
    return Path(name_or_dir).expanduser().is_dir()


def _explain_load_error(name_or_dir: str | Path, error: Exception) -> Exception:
    """Turn the Hub's failures into what the reader should do next."""
    text = str(error)
    if "401" in text or "gated" in text.lower() or "403" in text:
        return PermissionError(
            f"{name_or_dir} is gated or private. Accept its licence on huggingface.co, create "
            f"a read token, then set ${TOKEN_ENV} (or add it as a Colab secret named {TOKEN_ENV})."
        )
    if isinstance(error, OSError) and not _is_local(name_or_dir):
        return OSError(
            f"Could not load {name_or_dir!r}: it is not a local folder and the Hugging Face Hub "
            f"did not provide it ({type(error).__name__}: {text[:200]}). Offline, use the `tiny` "
            "profile or a folder written by save_pretrained."
        )
    return error


def load_tokenizer(name_or_dir: str | Path) -> Tokenizer:
    """A tokenizer by Hub id or folder; pad stays unset as in Llama 3 (the collators use eos)."""
    try:
        return AutoTokenizer.from_pretrained(str(name_or_dir), token=hf_token(),
                                             trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise _explain_load_error(name_or_dir, error) from error


def load_model(name_or_dir: str | Path, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> PreTrainedModel:
    """A causal LM by Hub id or folder, from safetensors only, in `dtype` on `device`.

    Attention is eager on CPU (SDPA with a padding mask is several times slower there) and
    SDPA on a GPU.
    """
    attention = "eager" if torch.device(device).type == "cpu" else "sdpa"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_dir), dtype=dtype, use_safetensors=True, trust_remote_code=False,
            token=hf_token(), attn_implementation=attention,
        )
    except (OSError, ValueError) as error:
        raise _explain_load_error(name_or_dir, error) from error
    return model.to(device)


def save_model(model: PreTrainedModel, tokenizer: Tokenizer, folder: str | Path) -> Path:
    """Write model (safetensors) and tokenizer to `folder` so `load_model` reads them back."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@contextlib.contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and inference mode for the block; the caller's training flag is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's (first) parameters."""
    return next(model.parameters()).device


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on `count` torch threads, then restore the previous number.

    The tiny models train on one thread: a second gains little at their size, and a fixed
    count keeps the trained weights the same on every machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
