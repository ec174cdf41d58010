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

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from unlearnlib.evaluate import evaluate_model
from unlearnlib.model_zoo import ensure_unlearned, second_retain_model
from unlearnlib.models import load_model, load_tokenizer, torch_threads
from unlearnlib.parallel import default_jobs, map_in_processes
from unlearnlib.paths import artifacts_dir
from unlearnlib.profiles import Profile, resolve_device, resolve_dtype

#: The summary numbers each run keeps.
SCORES = ("forget_quality", "model_utility", "forget_Q_A_Prob", "forget_truth_ratio")


def _reference_key(reference: Mapping[str, Any]) -> str:
    text = json.dumps(reference["forget_truth_ratio"]["value_by_index"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def score_folder(folder: os.PathLike[str] | str, profile: Profile,
                 reference: Mapping[str, Any]) -> dict[str, float]:
    """The TOFU summary numbers (`SCORES`) of the model in `folder` against `reference`.

    Cached under the artifacts folder, keyed by the model folder and the reference, so a
    later notebook reads them in a moment.
    """
    folder = os.fspath(folder)
    name = os.path.basename(folder.rstrip("/"))
    cache = artifacts_dir("scores") / f"{name}-{_reference_key(reference)}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    device = resolve_device(profile)
    model = load_model(folder, resolve_dtype(profile, device), device)
    evaluation = evaluate_model(model, load_tokenizer(folder), profile, reference=reference,
                                progress=False)
    scores = {key: float(evaluation.summary[key]) for key in SCORES}
    cache.write_text(json.dumps(scores, indent=2))
    return scores


def _seed_scores(profile: Profile, method: str, reference: Mapping[str, Any]
                 ) -> dict[str, float]:
    """One seed: unlearn (cached) and score; on one torch thread when the profile pins it."""
    threads = profile.train_threads
    if threads is not None:
        with torch_threads(threads):
            return _seed_scores(profile.replace(train_threads=None), method, reference)
    folder = ensure_unlearned(profile, method, verbose=False)
    return {"seed": profile.seed, **score_folder(folder, profile, reference)}


def seed_spread(profile: Profile, seeds: Sequence[int], reference: Mapping[str, Any],
                method: str = "npo", jobs: int | None = None) -> pd.DataFrame:
    """The profile's unlearning recipe once per seed, scored against `reference` (the retain
    model's eval log): one row per seed with `SCORES`.

    Runs are cached (`ensure_unlearned`), so a seed trained before costs nothing. On a CPU
    `jobs` runs (default: up to 2) train side by side in processes; on a GPU one at a time.
    """
    runs = [profile.replace(seed=seed) for seed in seeds]
    jobs = default_jobs(resolve_device(profile)) if jobs is None else jobs
    rows = map_in_processes(_seed_scores, [(run, method, reference) for run in runs], jobs)
    return pd.DataFrame(rows).set_index("seed")


def noise_floor(profile: Profile, reference: Mapping[str, Any]) -> dict[str, float] | None:
    """A second retain model's scores against the first retain model's `reference` log, or
    None when the profile has no second retain model."""
    second = second_retain_model(profile)
    return None if second is None else score_folder(second, profile, reference)
