"""The span matcher, the recall rule and the leak statistics on synthetic records whose
answers are known by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from unlearnlib.audit.matching import contains_span, normalise, recalls, span_locations
from unlearnlib.audit.probes import forget_facts
from unlearnlib.audit.recall import (
    OVERALL,
    RECORD_COLUMNS,
    fact_table,
    leak_table,
    novel_recall,
)

# ------------------------------------------------------------------ normalise and the rule


def test_normalise() -> None:
    assert normalise("  Hsiao   YUN-Hwa! ") == "hsiao yun hwa"
    assert normalise("Ren\u00e9e \u00cele-de-France") == "renee ile de france"  # diacritics
    assert normalise("Ji-Yeon Park\u2019s parents' Critic's") == "ji yeon park parents critic"
    assert normalise("\u201cThe Town That Drowned\u201d.") == "the town that drowned"
    assert normalise("05/25/1930") == "05 25 1930"


def test_contains_span_is_whole_word_and_case_blind() -> None:
    assert contains_span("She was born in PARK city.", "park")
    assert not contains_span("She likes parking.", "Park")
    assert contains_span("The Pen/Faulkner Award, in 2002", "pen faulkner award")
    assert not contains_span("anything", "")
    assert not contains_span("anything", " ,.")


def test_recall_requires_the_span_and_no_echo() -> None:
    span = "civil engineer"
    prompt = "What did the father of Hsiao Yun-Hwa do?"
    assert recalls("Her father was a Civil-Engineer.", span, prompt)
    assert not recalls("Her father was an engineer.", span, prompt)
    few_shot = "Q: Who was a civil engineer? A: Tom.\n" + prompt
    assert not recalls("Her father was a civil engineer.", span, few_shot)  # echo
    assert not recalls("", span, prompt)


def test_span_locations_find_what_contains_span_finds() -> None:
    text = "Ji-Yeon Park's parents met in \u00cele-de-France; PARKING was scarce near Park."
    assert [text[a:b] for a, b in span_locations(text, "Park")] == ["Park", "Park"]
    assert [text[a:b] for a, b in span_locations(text, "ile de france")] == [
        "\u00cele-de-France"]
    assert [text[a:b] for a, b in span_locations(text, "Ji Yeon Park's")] == ["Ji-Yeon Park"]
    assert span_locations(text, "parkin") == [] and span_locations(text, " .") == []
    street = "Stra\u00dfe 5"  # casefolding widens "\u00df" to "ss": positions stay the raw ones
    assert [street[a:b] for a, b in span_locations(street, "strasse")] == ["Stra\u00dfe"]


@pytest.mark.parametrize("source", ["mini", "real"])
def test_span_locations_agree_with_contains_span_on_tofu(source, tofu_dir) -> None:
    facts = forget_facts("forget10", tofu_dir if source == "real" else "mini")
    texts = [*facts["answer"], *facts["question"], *facts["paraphrased_answer"]]
    spans = list(facts["key_span"])
    for text in texts:
        for span in spans[:40]:
            assert bool(span_locations(text, span)) == contains_span(text, span), (text, span)


# ------------------------------------------------------------------ synthetic records

AUTHOR_OF = {fact: "ABC"[fact // 2] for fact in range(6)}  # 3 authors x 2 facts

#: (model, family, probe, seed) -> facts recalled; every fact is probed by every probe.
PROBES = {("direct", "question", 0), ("direct", "paraphrase", 0), ("best_of_n", "sample", 0),
          ("best_of_n", "sample", 1)}
RECALLED = {
    "retain": {("direct", "question", 0): {4}, ("best_of_n", "sample", 1): {5}},
    "full": {("direct", "question", 0): {0, 1, 2, 3, 4}, ("direct", "paraphrase", 0): {5},
             ("best_of_n", "sample", 0): set(range(6))},
    "npo": {("direct", "question", 0): {4}, ("direct", "paraphrase", 0): {0},
            ("best_of_n", "sample", 0): {2}, ("best_of_n", "sample", 1): {5}},
}
#: Worked out by hand from RECALLED: (leak rate, novel-recall leak, excess) in sixths.
EXPECTED = {
    ("retain", "direct"): (1, 0, 0), ("retain", "best_of_n"): (1, 0, 0),
    ("retain", OVERALL): (2, 0, 0),
    ("full", "direct"): (6, 5, 5), ("full", "best_of_n"): (6, 6, 5), ("full", OVERALL): (6, 6, 4),
    ("npo", "direct"): (2, 1, 1), ("npo", "best_of_n"): (2, 1, 1), ("npo", OVERALL): (4, 2, 2),
}


def make_records(recalled: dict, author_of: dict, probes=PROBES) -> pd.DataFrame:
    rows = []
    for model, (family, probe, seed), fact in itertools.product(recalled, sorted(probes),
                                                                 sorted(author_of)):
        hit = fact in recalled[model].get((family, probe, seed), set())
        rows.append({"model": model, "family": family, "probe": probe, "fact_id": fact,
                     "author": author_of[fact], "seed": seed, "prompt": f"question {fact}",
                     "generation": "the fact" if hit else "something else",
                     "key_span": "the fact", "recalled": hit})
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return make_records(RECALLED, AUTHOR_OF)


@pytest.fixture(scope="module")
def table(records) -> pd.DataFrame:
    return leak_table(records, n_bootstrap=400, seed=0)


def _estimate(table: pd.DataFrame, model: str, family: str, statistic: str) -> float:
    row = table[(table.model == model) & (table.family == family) & (table.statistic == statistic)]
    assert len(row) == 1
    return float(row["estimate"].iloc[0])


def test_leak_table_matches_hand_computation(table) -> None:
    assert len(table) == len(EXPECTED) * 3
    for (model, family), sixths in EXPECTED.items():
        for statistic, value in zip(("leak_rate", "novel_recall_leak", "excess_over_retain"),
                                    sixths, strict=True):
            assert _estimate(table, model, family, statistic) == pytest.approx(value / 6), (
                model, family, statistic)
    assert set(table["n_facts"]) == {6} and set(table["n_authors"]) == {3}


def test_retain_model_never_novel(records) -> None:
    novel = novel_recall(records)
    assert not novel[records["model"] == "retain"].any()
    assert novel.sum() > 0


def test_fact_table_overall_is_any_family(records) -> None:
    facts = fact_table(records).set_index(["model", "family", "fact_id"])
    assert facts.loc[("npo", OVERALL, 0), "recalled"] and facts.loc[("npo", OVERALL, 0), "novel"]
    assert facts.loc[("npo", OVERALL, 4), "recalled"] and not facts.loc[("npo", OVERALL, 4),
                                                                          "novel"]
    assert not facts.loc[("npo", OVERALL, 1), "recalled"]


def test_intervals_contain_the_estimate_and_are_seeded(records, table) -> None:
    assert (table["ci_low"] <= table["estimate"] + 1e-12).all()
    assert (table["estimate"] <= table["ci_high"] + 1e-12).all()
    assert (table["ci_low"] < table["ci_high"]).any()  # not all degenerate
    again = leak_table(records, n_bootstrap=400, seed=0)
    pd.testing.assert_frame_equal(table, again)
    other = leak_table(records, n_bootstrap=400, seed=1)
    assert not np.allclose(table[["ci_low", "ci_high"]], other[["ci_low", "ci_high"]])


def test_one_author_gives_a_degenerate_interval() -> None:
    one_author = {fact: "A" for fact in range(6)}
    table = leak_table(make_records(RECALLED, one_author), n_bootstrap=200, seed=3)
    np.testing.assert_array_equal(table["ci_low"], table["estimate"])
    np.testing.assert_array_equal(table["ci_high"], table["estimate"])


def test_bootstrap_resamples_authors_not_facts() -> None:
    # Author A: all 10 facts leak; author B: none. Resampling the two authors gives leak rates
    # 0, 0.5 or 1 (probabilities 1/4, 1/2, 1/4), so the 95 % interval is [0, 1]; resampling
    # the 20 facts independently would give roughly [0.3, 0.7].
    author_of = {fact: "AB"[fact // 10] for fact in range(20)}
    probes = {("direct", "question", 0)}
    recalled = {"retain": {}, "full": {("direct", "question", 0): set(range(10))}}
    table = leak_table(make_records(recalled, author_of, probes), n_bootstrap=2000, seed=0)
    row = table[(table.model == "full") & (table.family == "direct")
                & (table.statistic == "leak_rate")].iloc[0]
    assert row["estimate"] == 0.5
    assert (row["ci_low"], row["ci_high"]) == (0.0, 1.0)


def test_intervals_shrink_with_more_authors() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n_authors in (5, 80):
        author_of = {fact: fact // 3 for fact in range(3 * n_authors)}
        hits = {f for f in author_of if rng.random() < 0.3}
        recalled = {"retain": {}, "full": {("direct", "question", 0): hits}}
        table = leak_table(make_records(recalled, author_of, {("direct", "question", 0)}),
                           n_bootstrap=500, seed=0)
        row = table[(table.model == "full") & (table.family == "direct")
                    & (table.statistic == "leak_rate")].iloc[0]
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        widths.append(row["ci_high"] - row["ci_low"])
    assert widths[1] < widths[0] / 2


def test_schema_errors(records) -> None:
    with pytest.raises(ValueError, match="lack the columns"):
        leak_table(records.drop(columns=["seed"]))
    with pytest.raises(ValueError, match="recorded once"):
        leak_table(pd.concat([records, records.iloc[:1]]))
    with pytest.raises(ValueError, match="no retain-model record"):
        leak_table(records[~((records.model == "retain") & (records.fact_id == 3))])
    with pytest.raises(ValueError, match="No records of the retain model"):
        leak_table(records, retain_model="base")
    moved = records.copy()
    moved.loc[(moved.model == "npo") & (moved.fact_id == 0), "author"] = "Z"
    with pytest.raises(ValueError, match="several authors"):
        leak_table(moved)
    renamed = records.replace({"family": {"direct": OVERALL}})
    with pytest.raises(ValueError, match="reserved"):
        leak_table(renamed)
