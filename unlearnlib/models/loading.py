"""Load and save models and tokenizers: a Hub id or a local `save_pretrained` folder.

Weights load from safetensors only and never with `trust_remote_code`: a course should not
run code or unpickle files it downloaded.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from unlearnlib.profiles import Profile, resolve_device, resolve_dtype

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


#: Weight files a model folder may hold (the second is a peft adapter, e.g. a LoRA checkpoint).
WEIGHT_FILES = ("model.safetensors", "adapter_model.safetensors")
_INDEX_FILE = "model.safetensors.index.json"


def is_path_like(name_or_dir: str | Path) -> bool:
    """Whether a model name means a local folder, never a Hub id.

    That is a Path, an existing folder, a name starting with "/", "." or "~", or one whose
    parent folder exists (a misspelled `runs/npo_typ` next to `runs/npo`).
    """
    if isinstance(name_or_dir, Path) or _is_local(name_or_dir):
        return True
    text = str(name_or_dir)
    parent = Path(text).expanduser().parent
    return text.startswith(("/", ".", "~")) or (parent != Path(".") and parent.is_dir())


def check_model_folder(name_or_dir: str | Path, weights: bool = True) -> None:
    """Check a local model folder before anything loads; a Hub id passes unchecked.

    The folder must exist and (with `weights`) hold safetensors weights whose headers read: a
    truncated or half-copied file fails here, naming the file, not deep inside transformers.
    """
    from safetensors import SafetensorError, safe_open

    if not is_path_like(name_or_dir):
        return
    folder = Path(name_or_dir).expanduser()
    advice = ("pass a folder written by save_pretrained (e.g. by `unlearnlib unlearn --out`) "
              "or a Hub id such as org/name")
    if not folder.is_dir():
        raise FileNotFoundError(f"Model folder {folder} does not exist: {advice}.")
    if not weights:
        return
    files = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if (folder / _INDEX_FILE).is_file():
        try:
            shards = set(json.loads((folder / _INDEX_FILE).read_text())["weight_map"].values())
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{folder / _INDEX_FILE} is not a valid index ({error}): copy "
                             "the folder again or save the model again.") from error
        files += [folder / shard for shard in sorted(shards)]
    if not files:
        raise FileNotFoundError(f"Model folder {folder} has no model.safetensors: {advice}.")
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{file} is damaged or incomplete ({error}): copy the folder "
                             "again or save the model again.") from error


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
            f"did not provide it ({type(error).__name__}: {_first_line(text)}). Offline, use "
            "the `tiny` profile or a folder written by save_pretrained."
        )
    return error


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def load_tokenizer(name_or_dir: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer by Hub id or folder; pad stays unset as in Llama 3 (the collators use eos)."""
    check_model_folder(name_or_dir, weights=False)
    try:
        return AutoTokenizer.from_pretrained(str(name_or_dir), token=hf_token(),
                                             trust_remote_code=False)
    except (OSError, ValueError) as error:
        raise _explain_load_error(name_or_dir, error) from error


def load_model(name_or_dir: str | Path, dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> PreTrainedModel:
    """A causal LM by Hub id or folder, from safetensors only, in `dtype` on `device`.

    Attention is eager on CPU (SDPA with a padding mask is several times slower there) and
    SDPA on a GPU. A path-like name (see `is_path_like`) is never looked up on the Hub, and
    a local folder's weights are checked first (`check_model_folder`).
    """
    check_model_folder(name_or_dir)
    attention = "eager" if torch.device(device).type == "cpu" else "sdpa"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(name_or_dir), dtype=dtype, use_safetensors=True, trust_remote_code=False,
            token=hf_token(), attn_implementation=attention,
        )
    except (OSError, ValueError) as error:
        raise _explain_load_error(name_or_dir, error) from error
    return model.to(device)


def load_for_profile(source: str | Path, profile: Profile, training: bool = False
                     ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model (in eval mode) and tokenizer from a Hub id or folder, on the profile's device and
    in its precision: for evaluation, or with `training=True` the dtype training loads weights
    in (`profiles.resolve_dtype`). Every "load a model for this profile" goes through here.
    """
    device = resolve_device(profile)
    model = load_model(source, resolve_dtype(profile, device, training), device)
    return model.eval(), load_tokenizer(source)


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
               folder: str | Path) -> Path:
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
