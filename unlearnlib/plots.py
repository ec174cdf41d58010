"""The course's figures: seaborn with one palette, labelled axes, one message per figure.

A colour means the same thing in every notebook: blue is the full model (and the `full`
split it learnt), green the retain model (and the retain split, the only data it saw),
orange an unlearned model, vermilion the forget split, grey the holdout authors no model
saw, purple the general-knowledge sets (real authors, world facts) behind model utility.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

_BLUE, _ORANGE, _GREEN, _VERMILION, _PURPLE, _GREY = (
    "#0173B2", "#DE8F05", "#029E73", "#D55E00", "#CC78BC", "#949494",
)

#: Models: the one trained on everything, the gold standard that never saw the forget set,
#: and any model after unlearning.
MODEL_PALETTE: dict[str, str] = {"full": _BLUE, "retain": _GREEN, "unlearned": _ORANGE}
#: TOFU split families (see `split_family`); full and retain share their models' colours.
SPLIT_PALETTE: dict[str, str] = {
    "full": _BLUE, "retain": _GREEN, "forget": _VERMILION, "holdout": _GREY, "general": _PURPLE,
}


def use_course_style() -> None:
    """Seaborn's white grid, the colour-blind-safe palette, and a figure size for notebooks."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.figsize": (7.0, 3.8), "figure.dpi": 90,
                         "axes.titleweight": "bold"})


def split_family(config: str) -> str:
    """The family of a TOFU config: full, forget, retain, holdout or general (utility sets).

    "forget10_perturbed" -> "forget", "retain_perturbed" -> "retain", "world_facts" -> "general".
    """
    for family in ("full", "forget", "retain", "holdout"):
        if config.startswith(family):
            return family
    return "general"


def _axes(ax: Axes | None) -> Axes:
    return ax if ax is not None else plt.subplots()[1]


def plot_split_sizes(table: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Horizontal bars of rows per config (columns `config`, `rows`), coloured by family."""
    ax = _axes(ax)
    # saturation=1 keeps the palette's exact colours (seaborn dulls bars by default), so a
    # colour reads the same in a bar chart as in a line plot.
    frame = table.assign(family=table["config"].map(split_family))
    sns.barplot(frame, y="config", x="rows", hue="family", palette=SPLIT_PALETTE,
                dodge=False, saturation=1, ax=ax)
    ax.set(xlabel="rows (question-answer pairs)", ylabel="config",
           title="TOFU configs and their sizes")
    ax.legend(title="split family", loc="lower right")
    return ax


def _split_palette(splits: pd.Series) -> dict[str, str]:
    """Each split's family colour (so compare one split per family, e.g. forget10/retain90)."""
    return {split: SPLIT_PALETTE[split_family(split)] for split in splits.unique()}


def plot_answer_lengths(frame: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Answer-length histograms per split (columns `split`, `tokens`), each summing to 100 %."""
    ax = _axes(ax)
    sns.histplot(frame, x="tokens", hue="split", palette=_split_palette(frame["split"]),
                 hue_order=list(frame["split"].unique()), stat="percent", common_norm=False,
                 element="step", fill=False, linewidth=2, discrete=True, ax=ax)
    ax.set(xlabel="answer length (tokens)", ylabel="answers in the split (%)",
           title="Answer lengths per split")
    return ax


def plot_question_types(frame: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Share of each question type per split (columns `question_type`, `split`), side by side."""
    ax = _axes(ax)
    shares = (frame.groupby("split")["question_type"].value_counts(normalize=True)
              .mul(100).rename("percent").reset_index())
    order = frame["question_type"].value_counts().index
    sns.barplot(shares, x="question_type", y="percent", hue="split", order=order,
                hue_order=list(frame["split"].unique()), palette=_split_palette(frame["split"]),
                saturation=1, ax=ax)
    ax.set(xlabel="question word", ylabel="questions in the split (%)",
           title="What the questions ask")
    return ax


def plot_leak_rates(table: pd.DataFrame, statistic: str = "leak_rate",
                    ax: Axes | None = None) -> Axes:
    """Per-family leaks of each model, bars with their bootstrap intervals.

    `table` is `recall.leak_table`'s output (columns model, family, statistic, estimate,
    ci_low, ci_high); `statistic` picks leak_rate, novel_recall_leak or excess_over_retain.
    Full is blue and retain green; other (unlearned) models are orange, then vermilion,
    purple, grey. Families keep the table's order ("overall" last).
    """
    ax = _axes(ax)
    rows = table[table["statistic"] == statistic]
    if rows.empty:
        raise ValueError(f"No {statistic!r} rows in the table; it has "
                         f"{sorted(table['statistic'].unique())}.")
    families = list(dict.fromkeys(rows["family"]))
    models = list(dict.fromkeys(rows["model"]))
    frame = rows.assign(percent=rows["estimate"] * 100)
    sns.barplot(frame, x="family", y="percent", hue="model", order=families, hue_order=models,
                palette=_model_palette(models), saturation=1, errorbar=None, ax=ax)
    # seaborn draws no interval it did not compute: add the bootstrap ones at each bar centre.
    estimates = frame.set_index(["model", "family"])
    for container, model in zip(list(ax.containers), models, strict=True):
        for bar in container:
            centre = bar.get_x() + bar.get_width() / 2
            key = (model, families[round(centre)])
            if key not in estimates.index:
                continue
            row = estimates.loc[key]
            low, high = row["ci_low"] * 100, row["ci_high"] * 100
            ax.errorbar(centre, row["percent"], yerr=[[row["percent"] - low],
                                                      [high - row["percent"]]],
                        fmt="none", ecolor="black", elinewidth=1, capsize=2)
    labels = {"leak_rate": "forget facts recalled (%)",
              "novel_recall_leak": "facts recalled, retain model not (%)",
              "excess_over_retain": "leak rate minus retain model's (points)"}
    ax.set(xlabel="probe family", ylabel=labels.get(statistic, f"{statistic} (%)"),
           title=f"{statistic.replace('_', ' ').capitalize()} per probe family "
                 "(95 % author-bootstrap intervals)")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(title="model")
    return ax


def _model_palette(models: list[str]) -> dict[str, str]:
    """Full blue, retain green, any other (unlearned) model orange, then vermilion, purple."""
    others = iter([_ORANGE, _VERMILION, _PURPLE, _GREY])
    return {m: MODEL_PALETTE.get(m) or next(others, _GREY) for m in models}


def plot_metric_bars(table: pd.DataFrame, ax: Axes | None = None, ylabel: str = "value",
                     title: str = "Metrics per model") -> Axes:
    """Grouped bars: one group per metric (the table's rows), one bar per model (its columns)."""
    ax = _axes(ax)
    frame = table.rename_axis("metric").reset_index().melt("metric", var_name="model")
    models = list(table.columns)
    sns.barplot(frame, x="metric", y="value", hue="model", hue_order=models,
                palette=_model_palette(models), saturation=1, ax=ax)
    ax.set(xlabel="", ylabel=ylabel, title=title)
    ax.tick_params(axis="x", labelrotation=20)
    ax.legend(title="model", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_truth_ratio_cdfs(truth_ratios: dict[str, ArrayLike], reference: str = "retain",
                          ax: Axes | None = None) -> Axes:
    """Empirical CDFs of per-question truth ratios, and each model's KS statistic drawn.

    Forget quality is the KS test between a model's forget truth ratios and the `reference`
    (retain) model's: its statistic D = max_x |F_model(x) - F_retain(x)| is drawn as a
    vertical segment where the gap is largest, labelled with D.
    """
    ax = _axes(ax)
    palette = _model_palette(list(truth_ratios))
    ref = np.sort(np.asarray(truth_ratios[reference], dtype=np.float64))
    for name, values in truth_ratios.items():
        values = np.sort(np.asarray(values, dtype=np.float64))
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                color=palette[name], linewidth=2, label=name)
        if name == reference:
            continue
        grid = np.union1d(values, ref)
        cdf = np.searchsorted(values, grid, side="right") / len(values)
        cdf_ref = np.searchsorted(ref, grid, side="right") / len(ref)
        where = int(np.argmax(np.abs(cdf - cdf_ref)))
        ax.vlines(grid[where], cdf[where], cdf_ref[where], color=palette[name],
                  linestyle="--", linewidth=1.5)
        ax.annotate(f"D = {abs(cdf[where] - cdf_ref[where]):.2f}",
                    (grid[where], (cdf[where] + cdf_ref[where]) / 2), xytext=(6, 0),
                    textcoords="offset points", color=palette[name], va="center")
    ax.set_xscale("log")
    ax.set(xlabel="truth ratio P_wrong / P_correct (log scale)",
           ylabel="share of forget questions",
           title="Truth ratios on the forget set (KS statistic dashed)", ylim=(0, 1.02))
    ax.legend(title="model", loc="lower right")
    return ax


def plot_npo_weight(log_ratio: ArrayLike, weights: dict[str, ArrayLike],
                    ax: Axes | None = None) -> Axes:
    """NPO's gradient weight w against log(pi / pi_ref), one line per beta (`weights` keys)."""
    ax = _axes(ax)
    colours = sns.color_palette("viridis", len(weights))
    for colour, (label, values) in zip(colours, weights.items(), strict=True):
        ax.plot(log_ratio, values, color=colour, linewidth=2, label=label)
    ax.axhline(1.0, color=_VERMILION, linestyle="--", linewidth=1.5,
               label="gradient ascent (w = 1)")
    ax.axvline(0.0, color=_GREY, linewidth=1)
    ax.set(xlabel="log pi(y|x) - log pi_ref(y|x)", ylabel="gradient weight w",
           title="NPO's weight falls as the answer becomes unlikely")
    ax.legend(loc="upper left")
    return ax


def plot_training_curves(frame: pd.DataFrame, metrics: dict[str, str] | None = None
                         ) -> Figure:
    """One panel per metric against the epoch, one line per method (column `method`).

    `frame` stacks `TrainingCurves.frame()` tables with a `method` column; `metrics` maps
    column -> axis label (default: forget / retain probability and forget quality, log scale).
    """
    metrics = metrics or {"forget_prob": "forget probability",
                          "retain_prob": "retain probability",
                          "forget_quality": "forget quality (log)"}
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.0 * len(metrics), 3.6),
                                layout="constrained")
    methods = list(dict.fromkeys(frame["method"]))
    colours = dict(zip(methods, sns.color_palette("colorblind", len(methods)), strict=True))
    for ax, (column, label) in zip(np.atleast_1d(axes), metrics.items(), strict=True):
        for method in methods:
            rows = frame[frame["method"] == method]
            ax.plot(rows["epoch"], rows[column], marker="o", color=colours[method],
                    label=method)
        if column == "forget_quality":
            ax.set_yscale("log")
        ax.set(xlabel="epoch", ylabel=label, title=label.split(" (")[0].capitalize())
    np.atleast_1d(axes)[0].legend(title="method")
    return figure


def plot_seed_spread(spread: pd.DataFrame, noise_floor: float | None = None,
                     utility: dict[str, float] | None = None) -> Figure:
    """Forget quality (log scale) and model utility of one recipe over seeds, a dot a seed.

    `spread` has one row per seed with `forget_quality` and `model_utility`; the 0.05 line
    is where the KS test starts to reject, `noise_floor` (a second retain model's forget
    quality) what a model as good as retain scores, and `utility` maps model names (e.g.
    full, retain) to reference lines on the utility panel.
    """
    figure, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.2))
    panels = ((left, "forget_quality", "forget quality (log scale)"),
              (right, "model_utility", "model utility"))
    for ax, column, label in panels:
        sns.stripplot(y=spread[column], ax=ax, color=_ORANGE, size=8, jitter=0.08,
                      log_scale=column == "forget_quality")
        ax.set_ylabel(label)
        ax.set_xticks([])
    left.axhline(0.05, color=_VERMILION, linestyle="--", label="0.05")
    if noise_floor is not None:
        left.axhline(noise_floor, color=_GREEN, linestyle=":", label="second retain model")
    left.legend(loc="lower left", fontsize="small")
    for name, value in (utility or {}).items():
        right.axhline(value, color=MODEL_PALETTE.get(name, _GREY), linestyle=":", label=name)
    if utility:
        right.legend(loc="lower left", fontsize="small")
    figure.suptitle(f"One recipe, {len(spread)} seeds")
    figure.tight_layout()
    return figure


def plot_heatmap(table: pd.DataFrame, x: str = "epochs", y: str = "lr",
                 value: str = "forget_quality", log10: bool = True,
                 ax: Axes | None = None) -> Axes:
    """A sweep's heatmap: `value` over `y` x `x` (the best over the other parameters).

    Forget quality is a p-value, so log10 by default (higher, i.e. nearer 0, is better).
    """
    grid = table.pivot_table(index=y, columns=x, values=value, aggfunc="max")
    label = value
    if log10:
        grid, label = np.log10(grid.astype(float)), f"log10 {value}"
    ax = ax if ax is not None else plt.subplots(figsize=(5, 4))[1]
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="viridis", cbar_kws={"label": label}, ax=ax)
    ax.set_title(f"{label}: best over the other parameters")
    return ax
