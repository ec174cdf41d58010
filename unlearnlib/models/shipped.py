"""The tiny models that ship inside the package, so every student starts from the same weights.

Training the tiny full and retain models takes minutes, and CPUs of different makes round
floating-point sums differently: one thread on two machines gives different weights after a
few epochs, and every number downstream moves. So the course trains them once
(`unlearnlib models ship`) and ships the result: a folder per model under
`unlearnlib/weights/tiny/` (safetensors, tokenizer, build record) and a `manifest.json` with
each file's SHA-256, the settings each model was built with, and the machine and library
versions that built it.

The model zoo uses a shipped model when its settings equal the ones the profile asks for
(same architecture, recipe, epochs, seed and data), and trains one otherwise, or when the
profile says `train_from_scratch`.
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import transformers

from unlearnlib.cache import BUILD_RECORD, file_sha256
from unlearnlib.paths import PACKAGE_DIR

SHIPPED_DIR = PACKAGE_DIR / "weights" / "tiny"
MANIFEST = "manifest.json"
#: Build-record keys that say how or where a model was made, or what came out, not what was
#: asked for: they differ between the machine that shipped a model and the one looking it up.
LOCAL_KEYS = ("code_version", "torch", "base", "final_train_loss", "weights_sha256")


def portable_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A build configuration without its machine-local keys: what must match to reuse a model."""
    return {key: value for key, value in config.items() if key not in LOCAL_KEYS}


def read_manifest(folder: Path | None = None) -> dict[str, Any]:
    """The manifest of `folder` (default: the package's), empty when nothing is shipped."""
    path = (folder or SHIPPED_DIR) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


def shipped_model(config: Mapping[str, Any], folder: Path | None = None) -> Path | None:
    """The shipped model built with `config`'s settings, checked against its hashes; else None.

    A shipped file whose hash differs (a damaged install) raises: it must never be used, and
    training from scratch silently would give different numbers than the course expects.
    """
    wanted = portable_settings(config)
    for name, entry in read_manifest(folder)["models"].items():
        if entry["settings"] != wanted:
            continue
        model_dir = (folder or SHIPPED_DIR) / name
        for file, expected in entry["files"].items():
            if not (model_dir / file).is_file() or file_sha256(model_dir / file) != expected:
                raise RuntimeError(
                    f"The shipped tiny model {model_dir} is damaged ({file} does not match its "
                    "hash). Reinstall unlearnlib, or train the models yourself with "
                    "train_from_scratch=True (TRAIN_FROM_SCRATCH = True in notebook 02).")
        return model_dir
    return None


def ship_models(models: Mapping[str, Path], folder: Path = SHIPPED_DIR,
                threads: int = 1) -> Path:
    """Copy built model folders into `folder` under the given names and write the manifest.

    `models` maps a shipped name (e.g. "full", "retain-seed1") to a folder the zoo built; its
    build record supplies the settings. Replaces whatever was shipped before.
    """
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    entries = {}
    for name, source in models.items():
        target = folder / name
        shutil.copytree(source, target)
        record = json.loads((target / BUILD_RECORD).read_text())
        entries[name] = {
            "settings": portable_settings(record),
            "files": {file.name: file_sha256(file) for file in sorted(target.iterdir())},
        }
    manifest = {
        "built_with": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "torch_threads": threads, "machine": platform.machine(),
                       "processor": _processor_name(), "command": "unlearnlib models ship"},
        "models": entries,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return folder


def _processor_name() -> str:
    """The CPU model (Linux), else what `platform` knows: floating-point results depend on it."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
