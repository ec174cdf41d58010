"""The glossary defines every term the course relies on, and its numbers are the library's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unlearnlib.audit.seed_card import SEED_CARD
from unlearnlib.evaluation.tofu_metrics import forget_quality_at_distance

GLOSSARY = Path(__file__).resolve().parents[1] / "notebooks" / "glossary.md"
TERMS = ("LoRA", "ROUGE-L recall", "Truth ratio", "KS test and its p-value", "Forget quality",
         "Model utility", "Min-K%", "AUC direction", "privleak", "Extraction strength",
         "Exact memorisation", "Novel recall", "Key span", "NPO", "SimNPO", "GradDiff", "GA",
         "papermill", "nbval", "Retain model", "Full model", "Forget, retain and holdout splits")


@pytest.fixture(scope="module")
def text() -> str:
    return GLOSSARY.read_text()


@pytest.mark.parametrize("term", TERMS)
def test_every_term_is_defined(text, term) -> None:
    assert f"**{term}" in text


def test_math_delimiters_pair_up(text) -> None:
    without_display = re.sub(r"\$\$.*?\$\$", "", text, flags=re.DOTALL)
    assert text.count("$$") % 2 == 0
    assert without_display.count("$") % 2 == 0


def test_quoted_numbers_are_the_librarys(text) -> None:
    by_n = [forget_quality_at_distance(0.21, n) for n in (40, 100, 400)]
    assert f"FQ $\\approx {by_n[0]:.2f}$ on 40 questions" in text
    assert f"${by_n[1]:.3f}$ on 100" in text
    assert f"${by_n[2] * 1e8:.0f} \\times 10^{{-8}}$ on 400" in text
    leak, full_leak = SEED_CARD.views["novel_recall_leak"], SEED_CARD.full_model[
        "novel_recall_leak"]
    assert f"{leak:.2f} % for its NPO" in text and f"{full_leak:.2f} % for the TOFU-full" in text
