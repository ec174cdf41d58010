"""The course's figures: seaborn with one palette, labelled axes, one message per figure.

A colour means the same thing in every notebook: blue is the full model (and the `full`
split it learnt), green the retain model (and the retain split, the only data it saw),
orange an unlearned model, vermilion the forget split, grey the holdout authors no model
saw, purple the general-knowledge sets (real authors, world facts) behind model utility.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

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
