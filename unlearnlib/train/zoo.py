"""The models to unlearn from: the course's own tiny models, or the published Llama-3.2-1B ones.

On the `tiny` profile the course trains three models on TOFU-mini, answer-only loss:

* **base**: a fresh tiny Llama trained on `general_knowledge` (it stands in for pre-training,
  so model utility measures what the model knew before it met the authors);
* **full**: base fine-tuned on every author (`full`): the model to unlearn from;
* **retain**: base fine-tuned on the retain authors only (`retain90` for forget10): it never
  saw the forget authors, the gold standard an unlearned model is compared against.

Full and retain replay `general_knowledge` beside the authors (as the real models keep
their pre-training knowledge through TOFU fine-tuning). The models are cached under
`artifacts_dir("models")` in folders named by a hash of everything that shapes them (profile
fields, recipe, the data files' checksum, the training code), reused on a re-run and rebuilt
when missing or corrupt (each folder records its weights' SHA-256).

On the GPU profiles `profile.full_model` / `profile.retain_model` name the published
`open-unlearning/tofu_Llama-3.2-1B-Instruct_full` / `_retain90` (or any folder), loaded as
they are; `finetune_from_base` makes them from a base model id instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
import queue
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from peft import PeftModel
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

import unlearnlib
from unlearnlib.data.tofu import RETAIN_OF_FORGET, load_tofu, resolve_source
from unlearnlib.models.loading import load_model, load_tokenizer, save_model, torch_threads
from unlearnlib.models.shipped import (
    SHIPPED_DIR,
    file_sha256,
    read_manifest,
    ship_models,
    shipped_model,
)
from unlearnlib.models.tiny import build_model, build_tokenizer
from unlearnlib.parallel import default_jobs
from unlearnlib.paths import PACKAGE_DIR, artifacts_dir
from unlearnlib.profiles import Profile, get_profile, resolve_device, resolve_dtype
from unlearnlib.train.finetune import finetune, training_arguments

ROLES: tuple[str, ...] = ("base", "full", "retain")
#: The roles a profile unlearns from and compares against (base only starts them).
TRAINED_ROLES: tuple[str, ...] = ("full", "retain")
#: The file in each cached model folder that records its configuration and weights' hash.
BUILD_RECORD = "build.json"
WEIGHTS = "model.safetensors"
#: Modules whose code shapes the trained weights: editing them invalidates the cache.
_TRAINING_CODE = ("tiny.py", "formatting.py", "losses.py", "finetune.py")
_UNLEARNING_CODE = (*_TRAINING_CODE, "unlearn.py")
#: The profile fields that shape an unlearned model.
_UNLEARNING_FIELDS = ("unlearn_epochs", "learning_rate", "train_batch_size",
                      "gradient_accumulation_steps", "seed", "precision", "use_lora", "lora_rank",
                      "lora_alpha", "lora_target_modules", "train_threads")


@dataclass(frozen=True)
class TinyRecipe:
    """How the tiny models are trained, beyond the profile's batch size, epochs and seed."""

    #: Peak learning rate of the fine-tunes (linear warm-up, then linear decay to 0).
    learning_rate: float = 2e-3
    #: Share of the steps spent warming up.
    warmup: float = 0.05
    #: Epochs of the base model on `general_knowledge` (120 rows: cheap).
    base_epochs: int = 30
    #: Replay `general_knowledge` while fine-tuning full and retain (keeps model utility).
    replay_general_knowledge: bool = True
    #: Seed of the initial weights and the data order. The profile's own seed drives
    #: unlearning, so a run with another profile seed starts from the same models.
    seed: int = 0


TINY_RECIPE = TinyRecipe()
#: The tiny models shipped with the package, by shipped name: (role, recipe). The second
#: retain model (another seed) measures the noise floor of forget quality.
SHIPPED_TINY_MODELS: dict[str, tuple[str, TinyRecipe]] = {
    "full": ("full", TINY_RECIPE),
    "retain": ("retain", TINY_RECIPE),
    "retain-seed1": ("retain", dataclasses.replace(TINY_RECIPE, seed=1)),
}


def _training_split(profile: Profile, role: str) -> str:
    if role == "base":
        return "general_knowledge"
    if role == "full":
        return "full"
    if role == "retain":
        return RETAIN_OF_FORGET[profile.forget_split]
    raise ValueError(f"Unknown model role {role!r}. Valid roles: {', '.join(ROLES)}.")


def _data_checksum(profile: Profile) -> str:
    """SHA-256 over the data source's files (a Hub source is named, not hashed)."""
    source = resolve_source(profile.data_source)
    if source.path is None:
        return source.describe()
    digest = hashlib.sha256()
    for file in sorted(source.path.glob("*.json")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _code_version(files: tuple[str, ...] = _TRAINING_CODE) -> str:
    digest = hashlib.sha256(unlearnlib.__version__.encode())
    for name in files:
        digest.update((PACKAGE_DIR / name).read_bytes())
    return digest.hexdigest()[:16]


def build_config(profile: Profile, role: str, recipe: TinyRecipe | None = None) -> dict:
    """Everything that shapes a tiny model of `role`: the input of its cache key."""
    recipe = recipe or TINY_RECIPE
    config: dict = {
        "role": role,
        "split": _training_split(profile, role),
        "data_checksum": _data_checksum(profile),
        "code_version": _code_version(),
        "torch": torch.__version__,
        "tiny_model": dataclasses.asdict(profile.tiny_model),
        "train_batch_size": profile.train_batch_size,
        "gradient_accumulation_steps": profile.gradient_accumulation_steps,
        "epochs": recipe.base_epochs if role == "base" else profile.finetune_epochs,
        "recipe": dataclasses.asdict(recipe),
    }
    if role != "base":
        config["base"] = cache_key(profile, "base", recipe)
    return config


def cache_key(profile: Profile, role: str, recipe: TinyRecipe | None = None) -> str:
    """A short hash of `build_config`: equal configurations share a cached model."""
    text = json.dumps(build_config(profile, role, recipe), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tiny_model_dir(profile: Profile, role: str, recipe: TinyRecipe | None = None) -> Path:
    """Where the tiny model of `role` is (or will be) cached."""
    return artifacts_dir("models") / f"tiny-{role}-{cache_key(profile, role, recipe)}"


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


def _training_rows(profile: Profile, role: str, recipe: TinyRecipe) -> datasets.Dataset:
    rows = load_tofu(_training_split(profile, role), profile.data_source)
    if role != "base" and recipe.replay_general_knowledge:
        general = load_tofu("general_knowledge", profile.data_source)
        rows = datasets.concatenate_datasets([rows.select_columns(["question", "answer"]),
                                              general.select_columns(["question", "answer"])])
    return rows


def _train_tiny(profile: Profile, role: str, recipe: TinyRecipe, verbose: bool
                ) -> tuple[PreTrainedModel, Tokenizer, list[dict[str, float]]]:
    if role == "base":
        tokenizer = build_tokenizer(profile.tiny_model.vocab_size, profile.data_source)
        model = build_model(tokenizer, profile.tiny_model, seed=recipe.seed)
    else:
        base = ensure_tiny_model(profile, "base", recipe, verbose)
        model, tokenizer = load_model(base), load_tokenizer(base)
    epochs = recipe.base_epochs if role == "base" else profile.finetune_epochs
    args = training_arguments(profile, artifacts_dir("runs", f"tiny-{role}"),
                              num_train_epochs=epochs, learning_rate=recipe.learning_rate,
                              warmup_ratio=recipe.warmup, seed=recipe.seed,
                              data_seed=recipe.seed)
    with torch_threads(profile.train_threads or 1):
        log = finetune(model, tokenizer, _training_rows(profile, role, recipe), args,
                       progress=f"tiny {role}" if verbose else None)
    return model.eval(), tokenizer, log


def ensure_tiny_model(profile: Profile | str = "tiny", role: str = "full",
                      recipe: TinyRecipe | None = None, verbose: bool = True) -> Path:
    """The folder of the tiny model of `role`: one trained on this machine (cached), else the
    one shipped with the package, else trained now (also when missing or corrupt).

    `profile.train_from_scratch` skips the shipped models. Base is built before full and
    retain (they start from it). The folder is written under a temporary name and renamed
    when complete, so an interrupted build never looks finished. `recipe` defaults to
    `TINY_RECIPE`.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    recipe = recipe or TINY_RECIPE
    available = available_tiny_model(profile, role, recipe)
    if available is not None:
        return available
    folder = tiny_model_dir(profile, role, recipe)
    if folder.exists():
        if verbose:
            print(f"tiny {role}: cached model at {folder} is incomplete or corrupt; rebuilding")
        shutil.rmtree(folder)
    model, tokenizer, log = _train_tiny(profile, role, recipe, verbose)
    return _save_complete(model, tokenizer, folder, build_config(profile, role, recipe), log)


def available_tiny_model(profile: Profile, role: str, recipe: TinyRecipe | None = None
                         ) -> Path | None:
    """The tiny model of `role` without training: cached here, else shipped (unless the
    profile trains from scratch), else None."""
    recipe = recipe or TINY_RECIPE
    folder = tiny_model_dir(profile, role, recipe)
    if is_complete(folder):
        return folder
    if profile.train_from_scratch:
        return None
    return shipped_model(build_config(profile, role, recipe))


def _save_complete(model: PreTrainedModel, tokenizer: Tokenizer, folder: Path, config: dict,
                   log: list[dict[str, float]]) -> Path:
    """Save under a temporary name, record the config and weights' hash, rename when complete."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    save_model(model, tokenizer, partial)
    losses = [entry["loss"] for entry in log if "loss" in entry]
    record = {**config, "final_train_loss": losses[-1] if losses else None,
              "weights_sha256": file_sha256(partial / WEIGHTS)}
    (partial / BUILD_RECORD).write_text(json.dumps(record, indent=2))
    try:
        partial.rename(folder)
    except OSError:  # another process finished the same build first
        shutil.rmtree(partial)
        if not is_complete(folder):
            raise
    return folder


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


def _ensure_in_worker(profile: Profile, role: str, recipe: TinyRecipe, lines: Any) -> Path:
    transformers.utils.logging.disable_progress_bar()  # the worker's stderr goes nowhere useful
    if lines is None:
        return ensure_tiny_model(profile, role, recipe, verbose=False)
    with contextlib.redirect_stdout(_LineQueue(lines)):
        return ensure_tiny_model(profile, role, recipe, verbose=True)


def build_tiny_models(profile: Profile | str = "tiny", recipe: TinyRecipe | None = None,
                      verbose: bool = True, jobs: int | None = None) -> dict[str, Path]:
    """The full and retain tiny models, as {role: folder}: cached or shipped ones as they are,
    missing ones trained (base first, which they start from).

    Full and retain train side by side in `jobs` processes (default: 2 when the machine has
    2 cores or more), one torch thread each, as every tiny model trains. Their progress lines
    are printed here, so they show in a notebook's cell.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    recipe = recipe or TINY_RECIPE
    missing = [role for role in TRAINED_ROLES
               if available_tiny_model(profile, role, recipe) is None]
    jobs = default_jobs(torch.device("cpu")) if jobs is None else jobs
    if missing:
        ensure_tiny_model(profile, "base", recipe, verbose)
    if jobs >= 2 and len(missing) == 2:
        _train_side_by_side(profile, recipe, missing, jobs, verbose)
    return {role: ensure_tiny_model(profile, role, recipe, verbose) for role in TRAINED_ROLES}


def _train_side_by_side(profile: Profile, recipe: TinyRecipe, roles: list[str], jobs: int,
                        verbose: bool) -> None:
    """Train `roles` in spawned processes, forwarding their progress lines."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        lines = manager.Queue() if verbose else None
        futures = [pool.submit(_ensure_in_worker, profile, role, recipe, lines) for role in roles]
        while lines is not None and not all(f.done() for f in futures):
            with contextlib.suppress(queue.Empty):
                print(lines.get(timeout=0.2), flush=True)
        while lines is not None and not lines.empty():
            print(lines.get(), flush=True)
        for future in futures:
            future.result()


def same_as_shipped(profile: Profile, role: str, folder: Path,
                    recipe: TinyRecipe | None = None) -> bool | None:
    """Whether `folder` holds the same weights as the shipped model of the same settings
    (None when none is shipped, or `folder` is that model)."""
    shipped = shipped_model(build_config(profile, role, recipe))
    if shipped is None or shipped == folder:
        return None
    return file_sha256(shipped / WEIGHTS) == file_sha256(folder / WEIGHTS)


def second_retain_model(profile: Profile | str = "tiny") -> str | Path | None:
    """A retain model trained like the profile's but from another seed (on tiny: shipped), or
    None where the profile has none.

    Its forget quality against the first retain model is the noise floor: the score of a
    model that is, by construction, as good as retain.
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    name = profile.second_retain_model
    if name != "tiny":
        return name
    return ensure_tiny_model(profile, *SHIPPED_TINY_MODELS["retain-seed1"])


def ship_tiny_models(folder: Path = SHIPPED_DIR, verbose: bool = True) -> Path:
    """Train every shipped tiny model from scratch on this machine and ship them to `folder`.

    Run by the maintainers (`unlearnlib models ship`) after changing the tiny recipe, the
    profile's model fields or TOFU-mini; every student then starts from these weights.
    """
    profile = get_profile("tiny", train_from_scratch=True)
    build_tiny_models(profile, verbose=verbose)
    built = {name: ensure_tiny_model(profile, role, recipe, verbose)
             for name, (role, recipe) in SHIPPED_TINY_MODELS.items()}
    return ship_models(built, folder, threads=profile.train_threads or 1)


def unlearned_config(profile: Profile, method: str = "npo") -> dict:
    """Everything that shapes the course's unlearned model: the input of its cache key."""
    from unlearnlib.train.unlearn import objective

    full = model_source(profile, "full")
    if isinstance(full, Path):  # a folder: keyed by its weights, wherever they came from
        full = json.loads((full / BUILD_RECORD).read_text())["weights_sha256"]
    return {
        "method": dataclasses.asdict(objective(method)),
        "full_model": full,
        "torch": torch.__version__,
        "forget_split": profile.forget_split,
        "data_checksum": _data_checksum(profile),
        "code_version": _code_version(_UNLEARNING_CODE),
        **{name: getattr(profile, name) for name in _UNLEARNING_FIELDS},
    }


def unlearned_dir(profile: Profile, method: str = "npo") -> Path:
    """Where the profile's model unlearned with `method` is (or will be) cached."""
    text = json.dumps(unlearned_config(profile, method), sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    name = "tiny" if profile.full_model == "tiny" else Path(profile.full_model).name
    return artifacts_dir("models") / f"{name}-{method}-{key}"


def ensure_unlearned(profile: Profile | str = "tiny", method: str = "npo",
                     verbose: bool = True) -> Path:
    """The folder of the profile's model unlearned with `method` (published defaults, the
    profile's epochs and lr), trained first if missing or corrupt: notebook 04 trains it,
    05 to 07 read it. LoRA adapters are merged into the saved weights.
    """
    from unlearnlib.train.unlearn import training_dtype, unlearn

    profile = get_profile(profile) if isinstance(profile, str) else profile
    config = unlearned_config(profile, method)
    folder = unlearned_dir(profile, method)
    if is_complete(folder):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    forget = load_tofu(profile.forget_split, profile.data_source)
    retain = load_tofu(RETAIN_OF_FORGET[profile.forget_split], profile.data_source)
    model, tokenizer = load_zoo_model(profile, "full", dtype=training_dtype(profile))
    trainer = unlearn(model, tokenizer, forget, retain, profile,
                      artifacts_dir("runs", folder.name), method=method, progress=verbose)
    unlearned = trainer.model
    if isinstance(unlearned, PeftModel):
        unlearned = unlearned.merge_and_unload()
    return _save_complete(unlearned, tokenizer, folder, config, trainer.state.log_history)


def model_source(profile: Profile | str, role: str) -> str | Path:
    """The Hub id or folder of a profile's "full" or "retain" model (tiny ones built on demand)."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if role not in ("full", "retain"):
        raise ValueError(f"role must be 'full' or 'retain', not {role!r}.")
    name = profile.full_model if role == "full" else profile.retain_model
    return ensure_tiny_model(profile, role) if name == "tiny" else name


def describe_source(source: str | Path) -> str:
    """Where a model comes from, in words: shipped (with the machine that trained it), trained
    on this machine, a local folder, or a Hub id."""
    if not isinstance(source, Path):
        return f"{source} (Hugging Face Hub)"
    if source.parent == SHIPPED_DIR:
        built = read_manifest()["built_with"]
        return (f"shipped with unlearnlib ({source.name}; trained by `{built['command']}` on "
                f"{built['torch_threads']} thread(s) of a {built['processor']}, torch "
                f"{built['torch']})")
    if (source / BUILD_RECORD).is_file():
        return f"trained on this machine (cached as {source.name})"
    return f"local folder {source}"


def model_sources(profile: Profile | str, verbose: bool = True) -> dict[str, str | Path]:
    """The "full" and "retain" models' Hub ids or folders; tiny ones are built first, side by
    side (`build_tiny_models`), which is faster than `model_source` one role at a time."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    if "tiny" in (profile.full_model, profile.retain_model):
        build_tiny_models(profile, verbose=verbose)
    return {role: model_source(profile, role) for role in ("full", "retain")}


def load_zoo_model(profile: Profile | str, role: str, dtype: torch.dtype | None = None,
                   device: torch.device | str | None = None
                   ) -> tuple[PreTrainedModel, Tokenizer]:
    """Model and tokenizer of a profile's "full" or "retain" model, on the profile's device.

    `dtype` defaults to the profile's evaluation precision; for unlearning pass
    `unlearn.training_dtype(profile)`. A gated Hub model raises a PermissionError that says
    how to get access (token from $HF_TOKEN or Colab's secrets).
    """
    profile = get_profile(profile) if isinstance(profile, str) else profile
    source = model_source(profile, role)
    device = torch.device(device) if device is not None else resolve_device(profile)
    dtype = dtype or resolve_dtype(profile, device)
    return load_model(source, dtype, device).eval(), load_tokenizer(source)


def finetune_from_base(profile: Profile | str, base_model: str, role: str = "full",
                       epochs: int = 5, learning_rate: float = 1e-5, verbose: bool = True
                       ) -> Path:
    """Make a profile's full (or retain) model by fine-tuning `base_model` on TOFU yourself.

    The recipe of open-unlearning's published models: e.g. `meta-llama/Llama-3.2-1B-Instruct`,
    5 epochs, lr 1e-5, answer-only loss. The profile's switches apply (LoRA adapters are
    merged into the saved model, precision, gradient checkpointing). Cached like the tiny
    models; `meta-llama` repositories are gated: accept the licence on huggingface.co and set
    $HF_TOKEN (or a Colab secret named HF_TOKEN), or the load raises a PermissionError.
    """
    from unlearnlib.train.unlearn import prepare_model, save_trained, training_dtype

    profile = get_profile(profile) if isinstance(profile, str) else profile
    split = _training_split(profile, role)
    config = {"base_model": base_model, "split": split, "epochs": epochs,
              "learning_rate": learning_rate, "data": _data_checksum(profile),
              "use_lora": profile.use_lora, "lora_rank": profile.lora_rank,
              "code_version": _code_version()}
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    folder = artifacts_dir("models") / f"{base_model.replace('/', '--')}-{role}-{key}"
    if (folder / BUILD_RECORD).is_file():
        return folder
    device = resolve_device(profile)
    model = load_model(base_model, training_dtype(profile, device), device)
    tokenizer = load_tokenizer(base_model)
    model = prepare_model(model, profile)
    args = training_arguments(profile, artifacts_dir("runs", folder.name),
                              num_train_epochs=epochs, learning_rate=learning_rate,
                              warmup_ratio=1 / epochs)
    finetune(model, tokenizer, load_tofu(split, profile.data_source), args,
             progress=f"{base_model} {role}" if verbose else None)
    save_trained(model, tokenizer, folder, merge=True)
    (folder / BUILD_RECORD).write_text(json.dumps(config, indent=2))
    return folder
