"""Training curves: forget / retain probability and forget quality recorded while unlearning.

A light `TrainerCallback` for the notebooks' plots. At the start, every third epoch (or every
N epochs or N steps) and at the end it scores the model with the evaluation code
(`unlearnlib.evaluation.likelihood`):

* forget probability: mean exp(-avg_loss) of the forget answers (TOFU's forget_Q_A_Prob),
* retain probability: the same on `retain_perturbed` (retain_Q_A_Prob),
* forget quality: the KS-test p-value between the model's and the retain model's truth ratios
  on the forget split's `_perturbed` file (`tofu_metrics.forget_quality`).

The forget probability and the truth ratios come from one prompt-sharing pass over the
`_perturbed` file (its `answer` column is the forget answer). Even so a point costs more
than half an NPO epoch on the tiny profile (forward passes over 800 answers against 200
training samples forward and backward), hence a point every 3 epochs by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from unlearnlib.data.tofu import load_tofu
from unlearnlib.evaluation.likelihood import answer_probabilities, score_perturbed_set
from unlearnlib.evaluation.tofu_metrics import forget_quality, truth_ratio_forget_score
from unlearnlib.models.loading import load_tokenizer
from unlearnlib.parallel import default_jobs, map_in_processes
from unlearnlib.paths import artifacts_dir
from unlearnlib.profiles import Profile, resolve_device
from unlearnlib.train.pipeline import unlearn_from_profile
from unlearnlib.train.zoo import model_source


class TrainingCurves(TrainerCallback):
    """Record forget/retain probability and forget quality every N epochs (or N steps).

    `retain_truth_ratios` are the retain model's per-question truth ratios on
    `forget_perturbed` (`likelihood.truth_ratios(retain_model, ...)`); without them forget
    quality is left out. Points: at the start (`at_start`), every `every_n_epochs` epochs or,
    if set, every `every_n_steps` steps, and at the end of training. Records are in `records`
    (one dict per point) and `frame()`. Only the main process evaluates under multi-process
    training.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, forget_perturbed: datasets.Dataset,
                 retain: datasets.Dataset, retain_truth_ratios: ArrayLike | None = None,
                 every_n_epochs: int = 3, every_n_steps: int | None = None,
                 batch_size: int = 64, at_start: bool = True):
        self.tokenizer = tokenizer
        self.forget_perturbed = forget_perturbed
        self.retain = retain
        self.retain_truth_ratios = (None if retain_truth_ratios is None
                                    else np.asarray(retain_truth_ratios, dtype=np.float64))
        self.every_n_epochs = every_n_epochs
        self.every_n_steps = every_n_steps
        self.batch_size = batch_size
        self.at_start = at_start
        self.records: list[dict[str, float]] = []

    @classmethod
    def for_profile(cls, profile: Profile, tokenizer: PreTrainedTokenizerBase,
                    retain_truth_ratios: ArrayLike | None = None, **kwargs: Any
                    ) -> TrainingCurves:
        """Curves on the profile's forget split and `retain_perturbed`, as TOFU reports them
        (their first `eval_max_samples` rows when the profile sets it)."""
        def rows(config: str) -> datasets.Dataset:
            dataset = load_tofu(config, profile.data_source)
            keep = profile.eval_max_samples or len(dataset)
            return dataset.select(range(min(keep, len(dataset))))

        return cls(tokenizer, rows(f"{profile.forget_split}_perturbed"), rows("retain_perturbed"),
                   retain_truth_ratios, **kwargs)

    def measure(self, model: PreTrainedModel) -> dict[str, float]:
        """Forget and retain probability, forget truth-ratio score and forget quality now."""
        forget = score_perturbed_set(model, self.tokenizer, self.forget_perturbed,
                                     batch_size=self.batch_size, label="forget (curves)")
        truth_ratios = forget.truth_ratio()
        point = {
            "forget_prob": float(forget.answer.prob.mean()),
            "retain_prob": float(answer_probabilities(model, self.tokenizer, self.retain,
                                                      self.batch_size).mean()),
            "forget_truth_ratio": float(truth_ratio_forget_score(truth_ratios)),
        }
        if self.retain_truth_ratios is not None:
            point["forget_quality"] = float(forget_quality(truth_ratios,
                                                           self.retain_truth_ratios))
        return point

    def _record(self, state: TrainerState, model: PreTrainedModel | None) -> None:
        if model is None or not state.is_world_process_zero:
            return
        if self.records and self.records[-1]["step"] == state.global_step:
            return  # already measured at this step
        self.records.append({"step": state.global_step, "epoch": float(state.epoch or 0.0),
                             **self.measure(model)})

    def on_train_begin(self, args: TrainingArguments, state: TrainerState,
                       control: TrainerControl, model: PreTrainedModel | None = None,
                       **kwargs: Any) -> None:
        if self.at_start and state.global_step == 0:
            self._record(state, model)

    def on_step_end(self, args: TrainingArguments, state: TrainerState,
                    control: TrainerControl, model: PreTrainedModel | None = None,
                    **kwargs: Any) -> None:
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            self._record(state, model)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, model: PreTrainedModel | None = None,
                     **kwargs: Any) -> None:
        if not self.every_n_steps and round(state.epoch or 0) % self.every_n_epochs == 0:
            self._record(state, model)

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, model: PreTrainedModel | None = None,
                     **kwargs: Any) -> None:
        self._record(state, model)

    def frame(self) -> pd.DataFrame:
        """The records as a table: step, epoch, forget_prob, retain_prob, ... per row."""
        return pd.DataFrame.from_records(self.records)


def method_curves(profile: Profile, method: str, retain_truth_ratios: ArrayLike | None = None,
                  epochs: int | None = None, every_n_epochs: int = 3) -> pd.DataFrame:
    """Unlearn `method` from a fresh copy of the profile's full model and return its curves.

    `epochs` replaces the profile's `unlearn_epochs` (a short comparison); the run's
    checkpoints go under the artifacts' `runs/` folder.
    """
    tokenizer = load_tokenizer(model_source(profile, "full"))
    curves = TrainingCurves.for_profile(profile, tokenizer, retain_truth_ratios,
                                        every_n_epochs=every_n_epochs)
    overrides = {} if epochs is None else {"num_train_epochs": epochs}
    run_dir = artifacts_dir("runs", f"curves-{method}-{profile.name}-seed{profile.seed}")
    unlearn_from_profile(profile, run_dir, method, callbacks=[curves], progress=False,
                         **overrides)
    return curves.frame().assign(method=method)


def compare_methods(profile: Profile, methods: Sequence[str],
                    retain_truth_ratios: ArrayLike | None = None, epochs: int | None = None,
                    every_n_epochs: int = 3, jobs: int | None = None) -> pd.DataFrame:
    """`method_curves` for each method, side by side in processes on a CPU (`jobs`, default
    up to 2; one at a time on a GPU): one table with a `method` column, in `methods` order."""
    jobs = default_jobs(resolve_device(profile)) if jobs is None else jobs
    calls = [(profile, method, retain_truth_ratios, epochs, every_n_epochs)
             for method in methods]
    return pd.concat(map_in_processes(method_curves, calls, jobs), ignore_index=True)
