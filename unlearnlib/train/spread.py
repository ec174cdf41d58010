"""Run-to-run spread: one unlearning recipe trained with several seeds, and the noise floor.

Forget quality is the p-value of a KS test on about a hundred truth ratios, so one run's
value is one draw from a wide distribution: the same recipe with another seed (another
pairing of forget and retain rows, another data order) can land orders of magnitude away.
`seed_spread` trains the recipe once per seed (cached, side by side on a CPU) and scores
every run against the retain model. `noise_floor` scores a second retain model, trained
from another seed, against the first: a model that is as good as retain by construction,
whose forget quality is what "indistinguishable" looks like in one draw.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from unlearnlib.cache import atomic_write_text, config_key, is_complete
from unlearnlib.evaluation.evaluate import evaluate_model
from unlearnlib.models.loading import load_for_profile
from unlearnlib.parallel import default_jobs, map_in_processes
from unlearnlib.paths import artifacts_dir
from unlearnlib.profiles import Profile, resolve_device
from unlearnlib.train.pipeline import ensure_unlearned, unlearned_dir
from unlearnlib.train.zoo import second_retain_model

#: The summary numbers each run keeps.
SCORES = ("forget_quality", "model_utility", "forget_Q_A_Prob", "forget_truth_ratio")


def _score_cache(folder: os.PathLike[str] | str, reference: Mapping[str, Any]) -> Path:
    name = os.path.basename(os.fspath(folder).rstrip("/"))
    key = config_key(reference["forget_truth_ratio"]["value_by_index"])
    return artifacts_dir("scores") / f"{name}-{key}.json"


def score_folder(folder: os.PathLike[str] | str, profile: Profile,
                 reference: Mapping[str, Any]) -> dict[str, float]:
    """The TOFU summary numbers (`SCORES`) of the model in `folder` against `reference`.

    Cached under the artifacts folder, keyed by the model folder and the reference, so a
    later notebook reads them in a moment.
    """
    cache = _score_cache(folder, reference)
    if cache.is_file():
        return json.loads(cache.read_text())
    model, tokenizer = load_for_profile(folder, profile)
    evaluation = evaluate_model(model, tokenizer, profile, reference=reference, progress=False)
    scores = {key: float(evaluation.summary[key]) for key in SCORES}
    atomic_write_text(cache, json.dumps(scores, indent=2))
    return scores


def _train(profile: Profile, method: str) -> Path:
    return ensure_unlearned(profile, method, progress=False)


def train_seeds(profile: Profile, seeds: Sequence[int], method: str = "npo",
                jobs: int | None = None) -> dict[int, Path]:
    """The profile's unlearning recipe trained once per seed (cached): {seed: folder}.

    Seeds not cached yet train side by side on a CPU (`jobs`, default up to 2, one torch
    thread each), one at a time on a GPU.
    """
    runs = {seed: profile.replace(seed=seed) for seed in dict.fromkeys(seeds)}
    missing = [seed for seed, run in runs.items() if not is_complete(unlearned_dir(run, method))]
    jobs = default_jobs(resolve_device(profile)) if jobs is None else jobs
    map_in_processes(_train, [(runs[seed], method) for seed in missing], jobs)
    return {seed: unlearned_dir(run, method) for seed, run in runs.items()}


def seed_spread(profile: Profile, seeds: Sequence[int], reference: Mapping[str, Any],
                method: str = "npo", jobs: int | None = None) -> pd.DataFrame:
    """The profile's unlearning recipe once per seed (`train_seeds`), scored against
    `reference` (the retain model's eval log): one row per seed with `SCORES`.

    Training and scores are cached, so what an earlier notebook ran costs nothing here.
    """
    jobs = default_jobs(resolve_device(profile)) if jobs is None else jobs
    folders = train_seeds(profile, seeds, method, jobs)
    unscored = [folder for folder in folders.values()
                if not _score_cache(folder, reference).is_file()]
    map_in_processes(score_folder, [(folder, profile, reference) for folder in unscored], jobs)
    scores = [score_folder(folder, profile, reference) for folder in folders.values()]
    return pd.DataFrame(scores, index=pd.Index(list(folders), name="seed"))


def noise_floor(profile: Profile, reference: Mapping[str, Any]) -> dict[str, float] | None:
    """A second retain model's scores against the first retain model's `reference` log, or
    None when the profile has no second retain model."""
    second = second_retain_model(profile)
    return None if second is None else score_folder(second, profile, reference)
