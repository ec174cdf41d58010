"""The model card of a sweep point, from what its run measured and nothing else.

`model_card(point_dir)` reads the point's ``results.json``, ``TOFU_EVAL.json`` settings and,
when `sweep.sweep_report` has ranked the sweep, the sweep's ``selection.json``; it returns a
huggingface_hub `ModelCard` (metadata: base model, the data set the run used, licence, tags)
with the method and hyper-parameters, the selection rule and grid size, forget quality,
model utility and the other TOFU numbers, and the leak audit per family with its bootstrap
intervals. A section whose data the run did not produce says so instead of showing numbers.
`write_card` writes it to the point's ``README.md`` (what the Hub shows).

A card is published with its model, so it names models by Hub id or folder name, never by
a local absolute path, and it names the data the run actually used: a tiny run's is the
synthetic TOFU-mini, which is not on the Hub, so its metadata lists no data set. Numbers
print with `display.format_number` (scientific notation rather than 0.000).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from unlearnlib.course.sweep import CHECKPOINT_DIR, SELECTION_FILE, load_results
from unlearnlib.data.tofu import HUB_DATASET
from unlearnlib.display import format_number
from unlearnlib.evaluation.eval_logs import SETTINGS_KEY, load_eval_log

#: The names of the data a run used, by the kind of source `tofu.TofuSource.describe` reports.
DATASET_NAMES = {"hub": "TOFU", "local": "TOFU (local copy)", "mini": "TOFU-mini"}
CARD_FILE = "README.md"
#: The card's markdown body, `str.format` fields filled in by `model_card`.
CARD_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
#: The TOFU numbers of the evaluation table: (label, where in results.json, key).
EVALUATION_ROWS = (
    ("Forget quality (KS p-value vs retain model; higher is better)", "summary",
     "forget_quality"),
    ("Model utility (harmonic mean of 9 retain/real-author/world-fact scores)", "summary",
     "model_utility"),
    ("privleak (Min-K% AUC vs retain model, %)", "summary", "privleak"),
    ("Forget answer probability", "metrics", "forget_Q_A_Prob"),
    ("Forget ROUGE-L recall", "metrics", "forget_Q_A_ROUGE"),
    ("Forget truth ratio", "metrics", "forget_truth_ratio"),
    ("Retain answer probability", "metrics", "retain_Q_A_Prob"),
    ("Retain ROUGE-L recall", "metrics", "retain_Q_A_ROUGE"),
    ("Retain truth ratio", "metrics", "retain_Truth_Ratio"),
    ("Extraction strength (forget)", "summary", "extraction_strength"),
    ("Exact memorisation (forget)", "summary", "exact_memorization"),
)
NOT_MEASURED = "not measured"


def _number(value: Any) -> str:
    return NOT_MEASURED if value is None else format_number(value)


def _is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).expanduser().exists()


def _model_label(name: str) -> str:
    """A Hub id as it is; a local folder by its name only (a card holds no local paths)."""
    return f"`{name}`" if _is_hub_id(name) else f"the local folder `{Path(name).name}`"


def _data_kind(source: str) -> str:
    """The kind of data source ("hub", "local", "mini") a `TofuSource.describe` label names."""
    kind = source.split(":", 1)[0]
    return kind if kind in DATASET_NAMES else "hub"


def _license(base_model: str) -> str:
    """Llama 3.2 derivatives carry Meta's licence; the course's tiny models are MIT."""
    return "llama3.2" if "llama-3.2" in base_model.lower() else "mit"


def _selection_section(point: str, selection: Mapping[str, Any] | None) -> str:
    if selection is None:
        return ("This point has not been ranked: run `unlearnlib sweep report` on its sweep "
                "folder to select among the grid's points.")
    ranking = selection["ranking"]
    rank = f"{ranking.index(point) + 1} of {len(ranking)}" if point in ranking else "unranked"
    return (f"- Selection rule: {selection['rule']}.\n"
            f"- Grid size: {selection['grid_size']} points "
            f"({selection['finished_points']} finished and ranked).\n"
            f"- Rank of this point: {rank}"
            + (" (the selected checkpoint)." if selection["point"] == point else "."))


def _interval(rows: Mapping[str, Mapping[str, Any]], statistic: str) -> str:
    row = rows.get(statistic)
    if row is None:
        return NOT_MEASURED
    low, estimate, high = (format_number(row[k]) for k in ("ci_low", "estimate", "ci_high"))
    return f"{estimate} [{low}, {high}]"


def _audit_section(audit: Mapping[str, Any] | None) -> str:
    if not audit or not audit.get("leak_table"):
        return ("No leak audit was run for this point, so no leak rates are reported (run the "
                "sweep with `-p AUDIT_FAMILIES '[\"direct\", ...]'` to audit every point).")
    by_family: dict[str, dict[str, Mapping[str, Any]]] = {}
    for row in audit["leak_table"]:
        by_family.setdefault(row["family"], {})[row["statistic"]] = row
    lines = ["Recall of the forget facts under each probe family, with 95 % bootstrap "
             "intervals over authors (the retain model, which never saw them, is the floor).",
             "",
             "| Family | Leak rate | Novel-recall leak | Excess over retain | Facts |",
             "|---|---|---|---|---|"]
    for family, rows in by_family.items():
        facts = next(iter(rows.values()))["n_facts"]
        lines.append(f"| {family} | {_interval(rows, 'leak_rate')} | "
                     f"{_interval(rows, 'novel_recall_leak')} | "
                     f"{_interval(rows, 'excess_over_retain')} | {facts} |")
    membership = [m for m in audit.get("membership", []) if m.get("model") != "retain"]
    for entry in membership:
        lines.append(f"\nMembership inference (Min-K%) on the audited facts: AUC "
                     f"{_number(entry['mia_min_k_auc'])}, privleak {_number(entry['privleak'])}.")
    return "\n".join(lines)


def _metadata(results: Mapping[str, Any], kind: str, forget_split: str, method: str
              ) -> ModelCardData:
    """The card's YAML header: base model, the data set (none for TOFU-mini), licence, tags."""
    base = results["models"]["full"]
    return ModelCardData(
        base_model=base if _is_hub_id(base) else None,
        datasets=None if kind == "mini" else [HUB_DATASET],
        license=_license(base), language="en", library_name="transformers",
        tags=["unlearning", "tofu", method, f"tofu-{forget_split}", "unlearnlib"],
        model_name=results["point"])


def _evaluation_rows(results: Mapping[str, Any]) -> str:
    """The rows of the evaluation table (`EVALUATION_ROWS`), "not measured" where absent."""
    return "\n".join(f"| {label} | {_number(results[where].get(key))} |"
                     for label, where, key in EVALUATION_ROWS)


def model_card(point_dir: str | Path) -> ModelCard:
    """The `ModelCard` of a finished sweep point (FileNotFoundError if it is not finished)."""
    folder = Path(point_dir)
    results = load_results(folder)
    if results is None:
        raise FileNotFoundError(f"{folder} has no complete results.json: run (or resume) the "
                                "sweep first")
    settings = load_eval_log(folder / "TOFU_EVAL.json").get(SETTINGS_KEY, {})
    forget_split = settings.get("forget_split", NOT_MEASURED)
    kind = _data_kind(settings.get("source", HUB_DATASET))
    selection_path = folder.parent / SELECTION_FILE
    selection = json.loads(selection_path.read_text()) if selection_path.is_file() else None
    parameters = results["parameters"]
    method = str(parameters.get("method", "unknown"))
    training = results["training"]
    samples = settings.get("max_samples")
    content = CARD_TEMPLATE.read_text(encoding="utf-8").format(
        metadata=_metadata(results, kind, forget_split, method).to_yaml(),
        point=results["point"], method=method, dataset=DATASET_NAMES[kind],
        forget_split=forget_split, profile=results["profile"],
        base=_model_label(results["models"]["full"]),
        retain=_model_label(results["models"]["retain"]),
        checkpoint_dir=CHECKPOINT_DIR, global_step=training["global_step"],
        final_loss=_number(training["final_loss"]),
        seconds=", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items()),
        hyper_parameters="\n".join(f"| {k} | {v} |" for k, v in parameters.items()),
        selection=_selection_section(results["point"], selection),
        scope=f"the first {samples} rows of every split" if samples else "every row of each split",
        evaluation=_evaluation_rows(results),
        audit=_audit_section(results.get("audit")),
    )
    return ModelCard(content)


def write_card(point_dir: str | Path) -> Path:
    """Write the point's model card to ``point_dir/README.md``; returns the path."""
    path = Path(point_dir) / CARD_FILE
    model_card(point_dir).save(path)
    return path
