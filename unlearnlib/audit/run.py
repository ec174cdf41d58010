"""The leak audit: every probe family on every model, calibrated by the retain model.

`run_audit` takes the models to audit by name, e.g. ``{"full": ..., "retain": ..., "npo":
...}`` (each a (model, tokenizer) pair), runs the probe families of `probes` on each with
the same facts, seeds and settings, and returns an `AuditResult`:

* ``records``: one row per (model, family, probe, fact, seed) (`recall.RECORD_COLUMNS`),
  written to ``audit_records.jsonl`` when an output folder is given;
* ``table``: `recall.leak_table`, per model and family (and "overall"): leak rate,
  novel-recall leak (recalled and not recalled by the retain model under the same probe and
  seed) and excess over the retain model, with 95 % bootstrap intervals over authors;
* ``membership``: Min-K% membership inference beside the families:
  AUC of forget (label 0) against holdout (label 1) and
  privleak = ((1 - AUC_model) - (1 - AUC_retain)) / (1 - AUC_retain) x 100;
* ``timings``: seconds per model and family.

The retain model never saw the forget authors, so its novel-recall leak is 0 by construction
and its leak rate is the chance floor (lucky guesses, general knowledge) the others are
measured against. Some families have a high floor: multiple choice (one gold option of
six) and the logit lens (a span's first token is often a common word piece). There novel
recall also counts lucky guesses on which the two models differ (two independent guessers
that are right 20 % of the time differ in the audited model's favour 16 % of the time), so
read the excess over the retain model for those families.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.audit import probes
from unlearnlib.audit.recall import OVERALL, RECORD_COLUMNS, check_records, leak_table
from unlearnlib.data.tofu import HOLDOUT_OF_FORGET, TofuSource, load_tofu, resolve_source
from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.evaluation.evaluate import membership_scores
from unlearnlib.evaluation.likelihood import score_answers
from unlearnlib.plots import plot_leak_rates
from unlearnlib.profiles import Profile, get_profile

__all__ = [
    "AUDIT_SETTINGS",
    "FAMILIES",
    "RECORDS_FILE",
    "AuditResult",
    "AuditSettings",
    "audit_settings",
    "check_families",
    "load_records",
    "membership_inference",
    "run_audit",
]

#: The probe families, in the order they run and are plotted.
FAMILIES: tuple[str, ...] = ("direct", "format_shift", "best_of_n", "context", "logit_lens",
                             "quantised", "relearn")
RECORDS_FILE = "audit_records.jsonl"
TABLE_FILE = "leak_table.csv"
MEMBERSHIP_FILE = "membership.csv"
FIGURE_FILE = "leak_rates.png"

ModelPair = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@dataclass(frozen=True)
class AuditSettings:
    """The knobs of the probe families (defaults: a GPU-sized audit; see `AUDIT_SETTINGS`)."""

    #: best_of_n: samples per question, temperature and nucleus top-p.
    n_samples: int = 16
    temperature: float = 1.0
    top_p: float = 0.95
    #: context: other QA pairs of the author placed before the question.
    n_context: int = 3
    #: logit_lens: a layer recalls when the span's first token ranks below this.
    lens_top_k: int = 5
    #: quantised: round-to-nearest bits and group size (LM head excluded).
    quant_bits: int = 4
    quant_group_size: int = 128
    #: relearn: LoRA epochs and learning rate on half of the forget authors (the GPU values
    #: are a usual LoRA choice, not yet tuned on Llama-3.2-1B).
    relearn_epochs: float = 3.0
    relearn_learning_rate: float = 2e-4
    #: leak_table: bootstrap resamples of the authors.
    n_bootstrap: int = 1000


#: Per profile. Tiny: 8 samples keep the audit of three models near one minute on one CPU
#: core (measured 61 s); LoRA teaches the tiny model only at a high learning rate (a rank-8
#: adapter on q and v measured: lr 3e-3, and it still hurt the retain facts).
AUDIT_SETTINGS: dict[str, AuditSettings] = {
    "tiny": AuditSettings(n_samples=8, relearn_epochs=5.0, relearn_learning_rate=3e-3),
    "colab-t4": AuditSettings(),
    "gpu-full": AuditSettings(),
}


def audit_settings(profile: Profile | str = "tiny", **overrides: Any) -> AuditSettings:
    """The profile's `AuditSettings` with keyword overrides (unknown names raise)."""
    name = profile.name if isinstance(profile, Profile) else profile
    settings = AUDIT_SETTINGS.get(name, AuditSettings())
    valid = {f.name for f in dataclasses.fields(AuditSettings)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"AuditSettings has no field(s) {unknown}. Valid fields: "
                        f"{', '.join(sorted(valid))}")
    return dataclasses.replace(settings, **overrides)


@dataclass(frozen=True)
class AuditResult:
    """What `run_audit` found: records, the leak table, membership inference, timings."""

    records: pd.DataFrame
    table: pd.DataFrame
    membership: pd.DataFrame
    timings: pd.DataFrame
    paths: dict[str, Path] | None = None

    def estimates(self, statistic: str = "novel_recall_leak") -> pd.DataFrame:
        """One statistic as a model x family grid of estimates (families in audit order)."""
        grid = self.table[self.table["statistic"] == statistic].pivot(
            index="model", columns="family", values="estimate")
        order = [f for f in (*FAMILIES, OVERALL) if f in grid.columns]
        return grid[order].reindex(self.table["model"].unique())

    def plot(self, statistic: str = "leak_rate", ax: Axes | None = None) -> Axes:
        """Per-family bars with intervals (`plots.plot_leak_rates`)."""
        return plot_leak_rates(self.table, statistic=statistic, ax=ax)


def load_records(path: str | Path) -> pd.DataFrame:
    """Audit records written by `run_audit` (a folder or the .jsonl file), validated."""
    path = Path(path)
    file = path / RECORDS_FILE if path.is_dir() else path
    text = {column: str for column in ("model", "family", "probe", "prompt", "generation",
                                       "key_span")}
    return check_records(pd.read_json(file, lines=True, dtype=text))


def membership_inference(models: Mapping[str, ModelPair], forget: Any, holdout: Any, *,
                         retain_model: str = "retain", batch_size: int = 32) -> pd.DataFrame:
    """Min-K% (k = 0.4) AUC of forget against holdout answers and privleak, per model.

    AUC = roc_auc_score(labels, scores) with forget labelled 0 and holdout 1; privleak =
    ((1 - AUC_model) - (1 - AUC_retain)) / (1 - AUC_retain) x 100 (0 for the retain model;
    strongly negative = the forget set is still told apart from unseen authors).
    """
    aucs = {}
    for name, (model, tokenizer) in models.items():
        sides = [membership_scores(score_answers(
            model, tokenizer, list(rows["question"]), list(rows["answer"]),
            batch_size=batch_size, label=label), tokenizer)["mia_min_k"]
            for rows, label in ((forget, "forget"), (holdout, "holdout"))]
        aucs[name] = tm.auc_forget_vs_holdout(*sides)
    if retain_model not in aucs:
        raise ValueError(f"membership inference needs the retain model {retain_model!r} "
                         f"among the models ({sorted(aucs)})")
    return pd.DataFrame({"model": list(aucs), "mia_min_k_auc": list(aucs.values()),
                         "privleak": [tm.privleak(a, aucs[retain_model]) for a in aucs.values()]})


def _probe_family(family: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                  facts: pd.DataFrame, *, name: str, profile: Profile,
                  settings: AuditSettings, seed: int, max_new_tokens: int, batch_size: int,
                  progress: bool) -> pd.DataFrame:
    common = {"model_name": name, "batch_size": batch_size}
    generation = {**common, "max_new_tokens": max_new_tokens}
    if family == "direct":
        return probes.direct_probes(model, tokenizer, facts, **generation)
    if family == "format_shift":
        return probes.format_shift_probes(model, tokenizer, facts, seed=seed, **generation)
    if family == "best_of_n":
        return probes.best_of_n_probes(model, tokenizer, facts, n_samples=settings.n_samples,
                                       seed=seed, temperature=settings.temperature,
                                       top_p=settings.top_p, **generation)
    if family == "context":
        return probes.context_probes(model, tokenizer, facts, n_context=settings.n_context,
                                     seed=seed, **generation)
    if family == "logit_lens":
        return probes.logit_lens_probes(model, tokenizer, facts, top_k=settings.lens_top_k,
                                        **common)
    if family == "quantised":
        return probes.quantised_probes(model, tokenizer, facts, bits=settings.quant_bits,
                                       group_size=settings.quant_group_size, **generation)
    if family == "relearn":
        return probes.relearn_probes(model, tokenizer, facts, profile, seed=seed,
                                     epochs=settings.relearn_epochs,
                                     learning_rate=settings.relearn_learning_rate,
                                     progress=progress, **generation)
    raise ValueError(f"Unknown probe family {family!r}. Valid families: {', '.join(FAMILIES)}.")


def check_families(families: Sequence[str]) -> None:
    """Raise, listing the valid ones, when `families` is empty or names an unknown family."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"Unknown probe families {unknown}; choose from {', '.join(FAMILIES)}.")


def run_audit(
    models: Mapping[str, ModelPair],
    profile: Profile | str = "tiny",
    forget_split: str | None = None,
    retain_model: str = "retain",
    families: Sequence[str] = FAMILIES,
    out_dir: str | Path | None = None,
    *,
    facts: pd.DataFrame | None = None,
    source: str | Path | TofuSource | None = None,
    membership: bool = True,
    seed: int | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    progress: bool = True,
    **settings: Any,
) -> AuditResult:
    """Probe every model with every family on the forget facts; tabulate the leaks.

    `models` maps names to (model, tokenizer) and must include `retain_model`. The profile
    gives the defaults: forget split, data source, seed, ``eval_batch_size``,
    ``max_new_tokens`` and the `AuditSettings` (`audit_settings(profile, **settings)`, e.g.
    ``n_samples=4``). `facts` restricts the audit to some forget facts (rows of
    `probes.forget_facts`). With `out_dir` the records (JSON lines), the leak table and the
    membership table are written there, with the per-family figure (`FIGURE_FILE`).
    `membership=False` skips membership inference.
    """
    profile = get_profile(profile)
    if retain_model not in models:
        raise ValueError(f"The retain model {retain_model!r} is not among the models "
                         f"{sorted(models)}: every probe must run on it too (novel recall).")
    check_families(families)
    forget_split = forget_split or profile.forget_split
    src = resolve_source(source if source is not None else profile.data_source)
    facts = probes.forget_facts(forget_split, src) if facts is None else facts
    config = audit_settings(profile, **settings)
    options = {"profile": profile, "settings": config,
               "seed": profile.seed if seed is None else seed,
               "max_new_tokens": max_new_tokens or profile.max_new_tokens,
               "batch_size": batch_size or profile.eval_batch_size, "progress": progress}

    frames, timings = [], []
    steps = [(name, family) for name in models for family in families]
    for name, family in tqdm(steps, desc="leak audit", disable=not progress):
        model, tokenizer = models[name]
        start = time.perf_counter()
        frames.append(_probe_family(family, model, tokenizer, facts, name=name, **options))
        timings.append({"model": name, "family": family,
                        "seconds": time.perf_counter() - start})
    records = check_records(pd.concat(frames, ignore_index=True)[list(RECORD_COLUMNS)])
    table = leak_table(records, retain_model, n_bootstrap=config.n_bootstrap,
                       seed=options["seed"])
    if membership:
        start = time.perf_counter()
        forget_rows = load_tofu(forget_split, src).select(facts["fact_id"].tolist())
        holdout_rows = load_tofu(HOLDOUT_OF_FORGET[forget_split], src)
        mia = membership_inference(models, forget_rows, holdout_rows, retain_model=retain_model,
                                   batch_size=options["batch_size"])
        timings.append({"model": "all", "family": "membership",
                        "seconds": time.perf_counter() - start})
    else:
        mia = pd.DataFrame(columns=["model", "mia_min_k_auc", "privleak"])
    paths = _write(out_dir, records, table, mia) if out_dir is not None else None
    return AuditResult(records=records, table=table, membership=mia,
                       timings=pd.DataFrame(timings), paths=paths)


def _write(out_dir: str | Path, records: pd.DataFrame, table: pd.DataFrame,
           membership: pd.DataFrame) -> dict[str, Path]:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"records": folder / RECORDS_FILE, "table": folder / TABLE_FILE,
             "membership": folder / MEMBERSHIP_FILE, "figure": folder / FIGURE_FILE}
    records.to_json(paths["records"], orient="records", lines=True, force_ascii=False)
    table.to_csv(paths["table"], index=False)
    membership.to_csv(paths["membership"], index=False)
    figure = plot_leak_rates(table).figure
    figure.savefig(paths["figure"], dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths
