"""The artifacts cache: one key, one atomic write, one integrity check, one code version.

Every trained model, reference evaluation and score the course caches goes through here:

* `config_key` names a cached artifact by a hash of everything that shapes it;
* `atomic_dir` / `atomic_write_text` write under a temporary name and rename when complete,
  so an interrupted run never leaves something that looks finished;
* `is_complete` checks a cached model folder against the weights' hash in its record;
* `code_version` hashes the source of the modules that shape a result and of every
  unlearnlib module they import, so editing any of them invalidates what they made.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import unlearnlib

#: The file in each cached model folder that records its configuration and weights' hash.
BUILD_RECORD = "build.json"
WEIGHTS = "model.safetensors"


def config_key(config: Mapping[str, Any], length: int = 16) -> str:
    """A short hash of a JSON-able configuration: equal configurations share a cache entry."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_sha256(file: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_dir(folder: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `folder` to write into; rename it to `folder` on success.

    On an error the partial folder is removed. If another process completed `folder` first,
    theirs is kept and ours removed.
    """
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        yield partial
        partial.rename(folder)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
        if not folder.is_dir():
            raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> Path:
    """Write a file under a temporary name and rename it (a half-written file never exists)."""
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
    return path


def write_build_record(folder: Path, config: Mapping[str, Any], **extra: Any) -> None:
    """Record a model folder's configuration and its weights' SHA-256 (see `is_complete`)."""
    record = {**config, **extra, "weights_sha256": file_sha256(folder / WEIGHTS)}
    (folder / BUILD_RECORD).write_text(json.dumps(record, indent=2))


def read_build_record(folder: Path) -> dict[str, Any]:
    """The configuration a cached model folder was built with."""
    return json.loads((folder / BUILD_RECORD).read_text())


def is_complete(folder: Path) -> bool:
    """A cached model folder is usable: record, tokenizer, and weights whose hash matches."""
    record, weights = folder / BUILD_RECORD, folder / WEIGHTS
    if not (record.is_file() and weights.is_file() and (folder / "tokenizer.json").is_file()):
        return False
    try:
        expected = json.loads(record.read_text())["weights_sha256"]
    except (ValueError, KeyError):
        return False
    return file_sha256(weights) == expected


def _module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else None


def _imported_modules(name: str) -> set[str]:
    """The unlearnlib modules that module `name`'s source imports (anywhere in the file)."""
    file = _module_file(name)
    imported: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text() if file else "")):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("unlearnlib."):
            package = importlib.util.find_spec(node.module).submodule_search_locations
            for alias in node.names:  # `from unlearnlib.train import zoo` names a module
                imported.add(f"{node.module}.{alias.name}" if package else node.module)
        elif isinstance(node, ast.Import):
            imported.update(a.name for a in node.names if a.name.startswith("unlearnlib."))
    return imported


def code_version(*modules: str | ModuleType) -> str:
    """A hash of the package version and the source of `modules` and of every unlearnlib
    module they import, directly or not (read from the files, so a monkeypatched name or an
    import inside a function counts too): the code that shaped a cached result."""
    todo = [m if isinstance(m, str) else m.__name__ for m in modules]
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(_imported_modules(name) - found)
    digest = hashlib.sha256(unlearnlib.__version__.encode())
    for name in sorted(found):
        file = _module_file(name)
        digest.update(name.encode())
        digest.update(file.read_bytes() if file else b"")
    return digest.hexdigest()[:16]
