"""The models to unlearn from: the course's own tiny models, or the published Llama-3.2-1B ones.

On the `tiny` profile the course trains three models on TOFU-mini, answer-only loss:

* **base**: a fresh tiny Llama trained on `general_knowledge` (it stands in for pre-training,
  so model utility measures what the model knew before it met the authors);
* **full**: base fine-tuned on every author (`full`): the model to unlearn from;
* **retain**: base fine-tuned on the retain authors only (`retain90` for forget10): it never
  saw the forget authors, the gold standard an unlearned model is compared against.

Full and retain replay `general_knowledge` beside the authors (as the real models keep
their pre-training knowledge through TOFU fine-tuning). The recipe is `profile.tiny_recipe`.
A model comes from, in order: a folder trained on this machine (cached under
`artifacts_dir("models")`, named by `cache.config_key` of everything that shapes it), the
one shipped with the package (`shipped`), or training now.

On the GPU profiles `profile.full_model` / `profile.retain_model` name the published
`open-unlearning/tofu_Llama-3.2-1B-Instruct_full` / `_retain90` (or any folder), loaded as
they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import multiprocessing
import queue
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.cache import (
    BUILD_RECORD,
    WEIGHTS,
    atomic_dir,
    code_version,
    config_key,
    file_sha256,
    is_complete,
    write_build_record,
)
from unlearnlib.data.tofu import RETAIN_OF_FORGET, load_tofu, resolve_source
from unlearnlib.models.loading import (
    load_for_profile,
    load_model,
    load_tokenizer,
    save_model,
    torch_threads,
)
from unlearnlib.models.shipped import SHIPPED_DIR, read_manifest, ship_models, shipped_model
from unlearnlib.models.tiny import build_model, build_tokenizer
from unlearnlib.parallel import default_jobs
from unlearnlib.paths import artifacts_dir
from unlearnlib.profiles import COURSE_MODEL, Profile, get_profile
from unlearnlib.train.finetune import finetune
from unlearnlib.train.trainer import final_loss, training_arguments

ROLES: tuple[str, ...] = ("base", "full", "retain")
#: The roles a profile unlearns from and compares against (base only starts them).
TRAINED_ROLES: tuple[str, ...] = ("full", "retain")
#: The tiny models shipped with the package, by shipped name: (role, changes to the profile's
#: recipe). The second retain model (another seed) measures the noise floor of forget quality.
SHIPPED_TINY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("full", {}),
    "retain": ("retain", {}),
    "retain-seed1": ("retain", {"seed": 1}),
}


def _training_split(profile: Profile, role: str) -> str:
    if role == "base":
        return "general_knowledge"
    if role == "full":
        return "full"
    if role == "retain":
        return RETAIN_OF_FORGET[profile.forget_split]
    raise ValueError(f"Unknown model role {role!r}. Valid roles: {', '.join(ROLES)}.")


def data_checksum(profile: Profile) -> str:
    """SHA-256 over the profile's data files (a Hub source is named, not hashed)."""
    source = resolve_source(profile.data_source)
    if source.path is None:
        return source.describe()
    digest = hashlib.sha256()
    for file in sorted(source.path.glob("*.json")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def build_config(profile: Profile, role: str) -> dict:
    """Everything that shapes a tiny model of `role`: the input of its cache key."""
    recipe = profile.tiny_recipe
    config: dict = {
        "role": role,
        "split": _training_split(profile, role),
        "data_checksum": data_checksum(profile),
        "code_version": code_version(__name__),
        "torch": torch.__version__,
        "tiny_model": dataclasses.asdict(profile.tiny_model),
        "train_batch_size": profile.train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "epochs": recipe.base_epochs if role == "base" else profile.finetune_epochs,
        "recipe": dataclasses.asdict(recipe),
    }
    if role != "base":
        config["base"] = cache_key(profile, "base")
    return config


def cache_key(profile: Profile, role: str) -> str:
    """A short hash of `build_config`: equal configurations share a cached model."""
    return config_key(build_config(profile, role))


def tiny_model_dir(profile: Profile, role: str) -> Path:
    """Where the tiny model of `role` is (or will be) cached."""
    return artifacts_dir("models") / f"tiny-{role}-{cache_key(profile, role)}"


def _training_rows(profile: Profile, role: str) -> datasets.Dataset:
    rows = load_tofu(_training_split(profile, role), profile.data_source)
    if role != "base" and profile.tiny_recipe.replay_general_knowledge:
        general = load_tofu("general_knowledge", profile.data_source)
        rows = datasets.concatenate_datasets([rows.select_columns(["question", "answer"]),
                                              general.select_columns(["question", "answer"])])
    return rows


def _train_tiny(profile: Profile, role: str, progress: bool
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, list[dict[str, float]]]:
    recipe = profile.tiny_recipe
    if role == "base":
        tokenizer = build_tokenizer(profile.tiny_model.vocab_size, profile.data_source)
        model = build_model(tokenizer, profile.tiny_model, seed=recipe.seed)
    else:
        base = ensure_tiny_model(profile, "base", progress)
        model, tokenizer = load_model(base), load_tokenizer(base)
    epochs = recipe.base_epochs if role == "base" else profile.finetune_epochs
    args = training_arguments(profile, artifacts_dir("runs", f"tiny-{role}"),
                              num_train_epochs=epochs, learning_rate=recipe.learning_rate,
                              warmup_ratio=recipe.warmup, seed=recipe.seed,
                              data_seed=recipe.seed)
    with torch_threads(profile.train_threads or 1):
        log = finetune(model, tokenizer, _training_rows(profile, role), args,
                       progress=f"tiny {role}" if progress else None)
    return model.eval(), tokenizer, log


def ensure_tiny_model(profile: Profile, role: str = "full", progress: bool = True) -> Path:
    """The folder of the tiny model of `role`: one trained on this machine (cached), else the
    one shipped with the package, else trained now (also when missing or corrupt).

    `profile.train_from_scratch` skips the shipped models. Base is built before full and
    retain (they start from it). The folder is written atomically (`cache.atomic_dir`), so an
    interrupted build never looks finished.
    """
    available = available_tiny_model(profile, role)
    if available is not None:
        return available
    folder = tiny_model_dir(profile, role)
    if folder.exists():
        if progress:
            print(f"tiny {role}: cached model at {folder} is incomplete or corrupt; rebuilding")
        shutil.rmtree(folder)
    model, tokenizer, log = _train_tiny(profile, role, progress)
    with atomic_dir(folder) as partial:
        save_model(model, tokenizer, partial)
        write_build_record(partial, build_config(profile, role), final_train_loss=final_loss(log))
    return folder


def available_tiny_model(profile: Profile, role: str) -> Path | None:
    """The tiny model of `role` without training: cached here, else shipped (unless the
    profile trains from scratch), else None."""
    folder = tiny_model_dir(profile, role)
    if is_complete(folder):
        return folder
    if profile.train_from_scratch:
        return None
    return shipped_model(build_config(profile, role))


class _LineQueue(io.TextIOBase):
    """A worker's stdout: each complete line goes to the parent through a queue."""

    def __init__(self, lines: Any):
        self.lines, self.buffer = lines, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *complete, self.buffer = self.buffer.split("\n")
        for line in complete:
            self.lines.put(line)
        return len(text)


def _ensure_in_worker(profile: Profile, role: str, lines: Any) -> Path:
    transformers.utils.logging.disable_progress_bar()  # the worker's stderr goes nowhere useful
    if lines is None:
        return ensure_tiny_model(profile, role, progress=False)
    with contextlib.redirect_stdout(_LineQueue(lines)):
        return ensure_tiny_model(profile, role, progress=True)


def build_tiny_models(profile: Profile, progress: bool = True, jobs: int | None = None
                      ) -> dict[str, Path]:
    """The full and retain tiny models, as {role: folder}: cached or shipped ones as they are,
    missing ones trained (base first, which they start from).

    Full and retain train side by side in `jobs` processes (default: 2 when the machine has
    2 cores or more), one torch thread each, as every tiny model trains. Their progress lines
    are printed here, so they show in a notebook's cell.
    """
    missing = [role for role in TRAINED_ROLES if available_tiny_model(profile, role) is None]
    jobs = default_jobs(torch.device("cpu")) if jobs is None else jobs
    if missing:
        ensure_tiny_model(profile, "base", progress)
    if jobs >= 2 and len(missing) == 2:
        _train_side_by_side(profile, missing, jobs, progress)
    return {role: ensure_tiny_model(profile, role, progress) for role in TRAINED_ROLES}


def _train_side_by_side(profile: Profile, roles: list[str], jobs: int, progress: bool) -> None:
    """Train `roles` in spawned processes, forwarding their progress lines."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        lines = manager.Queue() if progress else None
        futures = [pool.submit(_ensure_in_worker, profile, role, lines) for role in roles]
        while lines is not None and not all(f.done() for f in futures):
            with contextlib.suppress(queue.Empty):
                print(lines.get(timeout=0.2), flush=True)
        while lines is not None and not lines.empty():
            print(lines.get(), flush=True)
        for future in futures:
            future.result()


def same_as_shipped(profile: Profile, role: str, folder: Path) -> bool | None:
    """Whether `folder` holds the same weights as the shipped model of the same settings
    (None when none is shipped, or `folder` is that model)."""
    shipped = shipped_model(build_config(profile, role))
    if shipped is None or shipped == folder:
        return None
    return file_sha256(shipped / WEIGHTS) == file_sha256(folder / WEIGHTS)


def _shipped_variant(profile: Profile, name: str) -> tuple[Profile, str]:
    role, recipe_changes = SHIPPED_TINY_MODELS[name]
    return profile.replace(tiny_recipe=profile.tiny_recipe.replace(**recipe_changes)), role


def second_retain_model(profile: Profile) -> str | Path | None:
    """A retain model trained like the profile's but from another seed (on tiny: shipped), or
    None where the profile has none.

    Its forget quality against the first retain model is the noise floor: the score of a
    model that is, by construction, as good as retain.
    """
    if profile.second_retain_model != COURSE_MODEL:
        return profile.second_retain_model
    return ensure_tiny_model(*_shipped_variant(profile, "retain-seed1"))


def ship_tiny_models(folder: Path = SHIPPED_DIR, progress: bool = True) -> Path:
    """Train every shipped tiny model from scratch on this machine and ship them to `folder`.

    Run by the maintainers (`unlearnlib models ship`) after changing the tiny recipe, the
    profile's model fields or TOFU-mini; every student then starts from these weights.
    """
    profile = get_profile("tiny", train_from_scratch=True)
    build_tiny_models(profile, progress=progress)
    built = {name: ensure_tiny_model(*_shipped_variant(profile, name), progress)
             for name in SHIPPED_TINY_MODELS}
    return ship_models(built, folder, threads=profile.train_threads or 1)


def model_source(profile: Profile, role: str) -> str | Path:
    """The Hub id or folder of a profile's "full" or "retain" model (tiny ones built on demand)."""
    if role not in TRAINED_ROLES:
        raise ValueError(f"role must be 'full' or 'retain', not {role!r}.")
    name = profile.full_model if role == "full" else profile.retain_model
    return ensure_tiny_model(profile, role) if name == COURSE_MODEL else name


def describe_source(source: str | Path) -> str:
    """Where a model comes from, in words: shipped (with the machine that trained it), trained
    on this machine, a local folder, or a Hub id."""
    if not isinstance(source, Path) and not Path(source).expanduser().is_dir():
        return f"{source} (Hugging Face Hub)"
    source = Path(source)
    if source.parent == SHIPPED_DIR:
        built = read_manifest()["built_with"]
        return (f"shipped with unlearnlib ({source.name}; trained by `{built['command']}` on "
                f"{built['torch_threads']} thread(s) of a {built['processor']}, torch "
                f"{built['torch']})")
    if (source / BUILD_RECORD).is_file():
        return f"trained on this machine (cached as {source.name})"
    return f"local folder {source}"


def model_sources(profile: Profile, progress: bool = True) -> dict[str, str | Path]:
    """The "full" and "retain" models' Hub ids or folders; tiny ones are built first, side by
    side (`build_tiny_models`), which is faster than `model_source` one role at a time."""
    if profile.trains_own_models:
        build_tiny_models(profile, progress=progress)
    return {role: model_source(profile, role) for role in TRAINED_ROLES}


def load_zoo_model(profile: Profile, role: str, training: bool = False
                   ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of a profile's "full" or "retain" model (`loading.load_for_profile`:
    its device, its precision, or the training dtype with `training=True`).

    A gated Hub model raises a PermissionError that says how to get access (token from
    $HF_TOKEN or Colab's secrets).
    """
    return load_for_profile(model_source(profile, role), profile, training)
