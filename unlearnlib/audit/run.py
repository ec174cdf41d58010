"""The leak audit: every probe family on every model, calibrated by the retain model.

`run_audit` takes the models to audit by name, e.g. ``{"full": ..., "retain": ..., "npo":
...}`` (each a (model, tokenizer) pair), runs the probe families of `FAMILIES` on each with
the same facts, seeds and settings (one `probes.ProbeContext` per model), and returns an
`AuditResult`:

* ``records``: one row per (model, family, probe, fact, seed) (`recall.RECORD_COLUMNS`),
  written to ``audit_records.jsonl`` when an output folder is given;
* ``table``: `recall.leak_table`, per model and family (and "overall"): leak rate,
  novel-recall leak (recalled and not recalled by the retain model under the same probe and
  seed) and excess over the retain model, with 95 % bootstrap intervals over authors;
* ``membership``: Min-K% membership inference beside the families: the AUC of forget
  against holdout answers and `tofu_metrics.privleak` against the retain model;
* ``timings``: seconds per model and family.

The retain model never saw the forget authors, so its novel-recall leak is 0 by construction
and its leak rate is the chance floor (lucky guesses, general knowledge) the others are
measured against. Some families have a high floor: multiple choice (one gold option of
six) and the logit lens (a span's first token is often a common word piece). There novel
recall also counts lucky guesses on which the two models differ (two independent guessers
that are right 20 % of the time differ in the audited model's favour 16 % of the time), so
read the excess over the retain model for those families.

Adding a family: a `probes.ProbeFn` (model, tokenizer, facts, context -> records) and one
entry in `FAMILIES`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from unlearnlib.audit import probes
from unlearnlib.audit.probes import ProbeContext, ProbeFn
from unlearnlib.audit.recall import OVERALL, RECORD_COLUMNS, check_records, leak_table
from unlearnlib.data.tofu import HOLDOUT_OF_FORGET, TofuSource, load_tofu, resolve_source
from unlearnlib.evaluation import tofu_metrics as tm
from unlearnlib.evaluation.likelihood import score_answers
from unlearnlib.evaluation.mia import membership_scores
from unlearnlib.profiles import Profile, get_profile

if TYPE_CHECKING:
    from matplotlib.axes import Axes


#: The probe families by name, in the order they run and are plotted. The names are data
#: (the records' `family` column), so "quantised" keeps its spelling.
FAMILIES: dict[str, ProbeFn] = {
    "direct": probes.direct_probes,
    "format_shift": probes.format_shift_probes,
    "best_of_n": probes.best_of_n_probes,
    "context": probes.context_probes,
    "logit_lens": probes.logit_lens_probes,
    "quantised": probes.quantized_probes,
    "relearn": probes.relearn_probes,
}
RECORDS_FILE = "audit_records.jsonl"
TABLE_FILE = "leak_table.csv"
MEMBERSHIP_FILE = "membership.csv"
_MEMBERSHIP_COLUMNS = ["model", "mia_min_k_auc", "privleak"]

ModelPair = tuple[PreTrainedModel, PreTrainedTokenizerBase]


@dataclass(frozen=True)
class AuditResult:
    """What `run_audit` found: records, the leak table, membership inference, timings.

    `paths` maps "records", "table" and "membership" to the files written (empty when
    `run_audit` had no output folder).
    """

    records: pd.DataFrame
    table: pd.DataFrame
    membership: pd.DataFrame
    timings: pd.DataFrame
    paths: dict[str, Path] = dataclasses.field(default_factory=dict)

    def estimates(self, statistic: str = "novel_recall_leak") -> pd.DataFrame:
        """One statistic as a model x family grid of estimates (families in audit order)."""
        grid = self.table[self.table["statistic"] == statistic].pivot(
            index="model", columns="family", values="estimate")
        order = [f for f in (*FAMILIES, OVERALL) if f in grid.columns]
        return grid[order].reindex(self.table["model"].unique())

    def plot(self, statistic: str = "leak_rate", ax: Axes | None = None) -> Axes:
        """Per-family bars with intervals (`plots.plot_leak_rates`).

        The figure is drawn on request only, so an audit without one never loads matplotlib.
        """
        from unlearnlib.plots import plot_leak_rates

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

    The AUC is `tofu_metrics.auc_forget_vs_holdout` (forget labelled 0, holdout 1) and
    privleak is `tofu_metrics.privleak` against the retain model's AUC (0 for the retain
    model; strongly negative = the forget set is still told apart from unseen authors).
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
    families: Sequence[str] | None = None,
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

    `models` maps names to (model, tokenizer) and must include `retain_model`. `families`
    defaults to all of `FAMILIES`. The profile gives the defaults: forget split, data
    source, seed, ``eval_batch_size``, ``max_new_tokens`` and the `AuditSettings`
    (``profile.audit``, with keyword overrides such as ``n_samples=4``; unknown names raise).
    `facts` restricts the audit to some forget facts (rows of `probes.forget_facts`; default:
    all), each author's first ``profile.audit.facts_per_author`` if the profile sets it. With
    `out_dir` the records (JSON lines), the leak table and the membership table are written
    there (`AuditResult.paths`); draw the figure with `AuditResult.plot`.
    `membership=False` skips membership inference.
    """
    profile = get_profile(profile)
    if retain_model not in models:
        raise ValueError(f"The retain model {retain_model!r} is not among the models "
                         f"{sorted(models)}: every probe must run on it too (novel recall).")
    families = list(FAMILIES) if families is None else list(families)
    check_families(families)
    forget_split = forget_split or profile.forget_split
    src = resolve_source(source if source is not None else profile.data_source)
    facts = probes.forget_facts(forget_split, src) if facts is None else facts
    if profile.audit.facts_per_author is not None:
        facts = facts.groupby("author", sort=False).head(profile.audit.facts_per_author)
    context = ProbeContext.from_profile(profile, seed=seed, max_new_tokens=max_new_tokens,
                                        batch_size=batch_size, progress=progress, **settings)

    records, timings = _probe_all(models, families, facts, context)
    table = leak_table(records, retain_model, n_bootstrap=context.settings.n_bootstrap,
                       seed=context.seed)
    if membership:
        start = time.perf_counter()
        mia = _membership_on_facts(models, facts, forget_split, src, retain_model,
                                   context.batch_size)
        timings.append({"model": "all", "family": "membership",
                        "seconds": time.perf_counter() - start})
    else:
        mia = pd.DataFrame(columns=_MEMBERSHIP_COLUMNS)
    paths = _write(out_dir, records, table, mia) if out_dir is not None else {}
    return AuditResult(records=records, table=table, membership=mia,
                       timings=pd.DataFrame(timings), paths=paths)


def _probe_all(models: Mapping[str, ModelPair], families: Sequence[str], facts: pd.DataFrame,
               context: ProbeContext) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every family on every model (models outer, families in the given order): the
    validated records and the seconds each (model, family) took."""
    frames, timings = [], []
    steps = [(name, family) for name in models for family in families]
    for name, family in tqdm(steps, desc="leak audit", disable=not context.progress):
        model, tokenizer = models[name]
        start = time.perf_counter()
        frames.append(FAMILIES[family](model, tokenizer, facts,
                                       dataclasses.replace(context, model_name=name)))
        timings.append({"model": name, "family": family,
                        "seconds": time.perf_counter() - start})
    records = check_records(pd.concat(frames, ignore_index=True)[list(RECORD_COLUMNS)])
    return records, timings


def _membership_on_facts(models: Mapping[str, ModelPair], facts: pd.DataFrame,
                         forget_split: str, source: TofuSource, retain_model: str,
                         batch_size: int) -> pd.DataFrame:
    """`membership_inference` on the audited forget rows against the split's holdout."""
    forget_rows = load_tofu(forget_split, source).select(facts["fact_id"].tolist())
    holdout_rows = load_tofu(HOLDOUT_OF_FORGET[forget_split], source)
    return membership_inference(models, forget_rows, holdout_rows, retain_model=retain_model,
                                batch_size=batch_size)


def _write(out_dir: str | Path, records: pd.DataFrame, table: pd.DataFrame,
           membership: pd.DataFrame) -> dict[str, Path]:
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"records": folder / RECORDS_FILE, "table": folder / TABLE_FILE,
             "membership": folder / MEMBERSHIP_FILE}
    records.to_json(paths["records"], orient="records", lines=True, force_ascii=False)
    table.to_csv(paths["table"], index=False)
    membership.to_csv(paths["membership"], index=False)
    return paths
