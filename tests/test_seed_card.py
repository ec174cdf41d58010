"""The seed card's numbers and the same views on tiny models: records by hand, two model passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnlib.audit.logit_lens import key_span_first_tokens
from unlearnlib.audit.probes import NO_SEED, answer_prefix, forget_facts
from unlearnlib.audit.recall import RECORD_COLUMNS
from unlearnlib.audit.seed_card import (
    CARD_COLUMNS,
    SEED_CARD,
    SISTER_CARDS,
    VIEWS,
    masked_top1_accuracy,
    published_cards,
    record_views,
    seed_card_summary,
    view_definitions,
)
from unlearnlib.data.formatting import render_chat

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _records(model: str, rows: list[tuple[str, str, int, int, bool]]) -> pd.DataFrame:
    """Audit records of one model from (family, probe, fact_id, seed, recalled)."""
    frame = pd.DataFrame(rows, columns=["family", "probe", "fact_id", "seed", "recalled"])
    frame = frame.assign(model=model, author=frame["fact_id"] // 2, prompt="p",
                         generation="g", key_span="k")
    return frame[list(RECORD_COLUMNS)]


def _npo_records() -> pd.DataFrame:
    rows = []
    for fact in range(4):
        rows += [("direct", "question", fact, NO_SEED, fact == 0),
                 ("direct", "paraphrase", fact, NO_SEED, fact == 3),
                 ("format_shift", "multiple_choice", fact, 7, fact >= 2),
                 ("format_shift", "cloze", fact, NO_SEED, fact == 1),
                 ("best_of_n", "sample", fact, 7, False),
                 ("best_of_n", "sample", fact, 8, fact == 0),
                 ("context", "context", fact, 7, fact == 2),
                 ("logit_lens", "layer_0", fact, NO_SEED, True)]
    for fact in (2, 3):
        rows += [("relearn", "question", fact, NO_SEED, True),
                 ("relearn", "paraphrase", fact, NO_SEED, fact == 3)]
    return _records("npo", rows)


def test_published_numbers_are_the_cards() -> None:
    assert SEED_CARD.recipe == {"method": "NPO", "epochs": 10, "learning_rate": 5e-5,
                                "alpha": 1.0, "beta": 0.1}
    assert SEED_CARD.views["forget_quality"] == 0.967
    assert SEED_CARD.views["novel_recall_leak"] == 4.67
    assert SEED_CARD.full_model["novel_recall_leak"] == 3.70
    assert set(SEED_CARD.views) == set(VIEWS) == set(view_definitions())
    cards = published_cards()
    assert list(cards.index) == ["1B (seed)", "3B", "8B"]
    assert cards.loc["3B", "full_model_leak"] == 7.85
    assert np.isnan(cards.loc["8B", "full_model_leak"])
    assert cards.loc["8B", "novel_recall_leak"] == SISTER_CARDS["8B"].views["novel_recall_leak"]


def test_record_views_are_prompt_level_rates() -> None:
    views = record_views(_npo_records(), "npo")
    # generation prompts: 4 facts x (question, paraphrase, cloze, best-of-N, context) = 20;
    # recalled: question 0, paraphrase 3, cloze 1, best-of-N 0 (one of two samples), context 2
    assert views["novel_recall_leak"] == pytest.approx(100 * 5 / 20)
    assert views["format_shift_leak"] == pytest.approx(100 * 3 / 8)  # 2 MC + 1 cloze of 8
    assert views["best_of_n_leak"] == pytest.approx(100 * 1 / 4)
    # held-out facts 2, 3: direct recalled 1 of 4 probes, after relearning 3 of 4
    assert views["relearn_recovery"] == pytest.approx(50.0)


def test_record_views_without_the_families_are_nan() -> None:
    direct_only = _records("npo", [("direct", "question", 0, NO_SEED, True)])
    views = record_views(direct_only, "npo")
    assert views["novel_recall_leak"] == 100.0
    assert all(np.isnan(views[k]) for k in ("format_shift_leak", "best_of_n_leak",
                                           "relearn_recovery"))
    with pytest.raises(ValueError, match="No audit records of the model 'ga'"):
        record_views(direct_only, "ga")


@pytest.fixture(scope="module")
def facts() -> pd.DataFrame:
    everything = forget_facts("forget10", "mini")
    return everything[everything["author"] == everything["author"].iloc[0]].reset_index(
        drop=True)


@pytest.fixture(scope="module")
def models(tiny_tokenizer, tiny_model, facts, memorised_model):
    """A "full" model that learnt the facts and an untrained "retain" model."""
    return {"full": (memorised_model(tiny_tokenizer, facts), tiny_tokenizer),
            "retain": (tiny_model, tiny_tokenizer)}


def _greedy_starts_span(model, tokenizer, fact: pd.Series) -> bool:
    text = render_chat(tokenizer, fact["question"]) + answer_prefix(fact["answer"],
                                                                    fact["key_span"])
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        top = int(model(ids).logits[0, -1].argmax())
    return top in key_span_first_tokens(tokenizer, fact["key_span"])


def test_masked_top1_is_the_models_own_next_token(models, facts) -> None:
    for model, tokenizer in models.values():
        expected = np.mean([_greedy_starts_span(model, tokenizer, f) for _, f in facts.iterrows()])
        assert masked_top1_accuracy(model, tokenizer, facts) == pytest.approx(expected)
    assert masked_top1_accuracy(*models["full"], facts) >= 0.5  # it learnt these facts


def test_summary_puts_the_card_beside_each_model(models, facts) -> None:
    records = pd.concat([_records(name, [("direct", "question", int(f), NO_SEED, name == "full")
                                         for f in facts["fact_id"]]) for name in models])
    summaries = {"retain": {"forget_quality": 1.0, "model_utility": 0.59}}
    table = seed_card_summary(records, models, facts, summaries)
    assert list(table.index) == list(VIEWS.values())
    assert list(table.columns) == [*CARD_COLUMNS, "full", "retain"]
    by_key = table.set_axis(list(VIEWS), axis=0)
    assert by_key["seed card"].to_dict() == SEED_CARD.views
    assert by_key.loc["novel_recall_leak", "seed card: TOFU-full"] == 3.70
    assert by_key.loc["forget_quality", "retain"] == 1.0
    assert np.isnan(by_key.loc["forget_quality", "full"])
    assert by_key.loc["novel_recall_leak", "full"] == 100.0
    assert by_key.loc["novel_recall_leak", "retain"] == 0.0
    assert by_key.loc["loglik_shift", "full"] == 0.0
    assert by_key.loc["loglik_shift", "retain"] < -1.0  # the retain model never saw them
    assert np.isnan(by_key.loc["relearn_recovery", "full"])
    with pytest.raises(ValueError, match="full model 'full' is not among"):
        seed_card_summary(records, {"retain": models["retain"]}, facts)
