"""Probe families on the tiny Llama: a model trained on one forget author vs an untrained one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from unlearnlib.audit import probes
from unlearnlib.audit.matching import contains_span, recalls
from unlearnlib.audit.probes import (
    BLANK,
    NO_SEED,
    ProbeContext,
    answer_prefix,
    best_of_n_probes,
    cloze_prompt,
    context_probes,
    context_prompts,
    direct_probes,
    forget_facts,
    format_shift_probes,
    halve_authors,
    logit_lens_probes,
    logit_lens_records,
    multiple_choice_options,
    quantized_probes,
    relearn_probes,
)
from unlearnlib.audit.quantize import quantizable_linears
from unlearnlib.audit.recall import RECORD_COLUMNS
from unlearnlib.evaluation.generation import generate_answers
from unlearnlib.profiles import get_profile

TRAINED_AUTHORS = (99,)
MAX_NEW_TOKENS = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def all_facts() -> pd.DataFrame:
    return forget_facts("forget10", "mini")


@pytest.fixture(scope="module")
def facts(all_facts) -> pd.DataFrame:
    return all_facts[all_facts["author"].isin(TRAINED_AUTHORS)].reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(tiny_tokenizer, facts, memorised_model):
    """A tiny Llama that memorised the 10 facts of one forget author."""
    return memorised_model(tiny_tokenizer, facts)


def _context(model_name: str, **overrides) -> ProbeContext:
    """The tiny profile's probe context with a short generation budget, batches of 32."""
    options = {"max_new_tokens": MAX_NEW_TOKENS, "batch_size": 32, **overrides}
    return ProbeContext.from_profile(get_profile("tiny"), model_name, **options)


def _follows_recall_rule(records: pd.DataFrame) -> bool:
    expected = [recalls(g, s, p) for g, s, p in
                zip(records["generation"], records["key_span"], records["prompt"], strict=True)]
    return records["recalled"].tolist() == expected


def _recall_rate(records: pd.DataFrame, probe: str) -> float:
    return float(records.loc[records["probe"] == probe, "recalled"].mean())


# --------------------------------------------------------------------------- facts


def test_forget_facts_on_mini_and_real_tofu(all_facts, tofu_dir) -> None:
    assert len(all_facts) == 100 and list(all_facts["fact_id"]) == list(range(100))
    assert sorted(all_facts["author"].unique()) == list(range(90, 100))
    assert (all_facts["key_span"].str.len() > 0).all()
    assert all(len(p) == 5 for p in all_facts["perturbed_answer"])
    real = forget_facts("forget10", tofu_dir)
    assert len(real) == 400 and sorted(real["author"].unique()) == list(range(180, 200))
    assert all(contains_span(a, s) for a, s in zip(real["answer"], real["key_span"], strict=True))


# --------------------------------------------------------------------------- 1. direct


def test_direct_probes_recall_what_was_trained_and_nothing_untrained(
        trained, tiny_model, tiny_tokenizer, facts) -> None:
    learnt = direct_probes(trained, tiny_tokenizer, facts, _context("full"))
    assert list(learnt.columns) == list(RECORD_COLUMNS) and len(learnt) == 2 * len(facts)
    assert set(learnt["probe"]) == {"question", "paraphrase"}
    assert (learnt["seed"] == NO_SEED).all() and (learnt["family"] == "direct").all()
    assert _follows_recall_rule(learnt)
    question_rows = learnt[learnt["probe"] == "question"]
    assert all(p.endswith("assistant<|end_header_id|>\n\n") and q in p for p, q in
               zip(question_rows["prompt"], facts["question"], strict=True))
    assert _recall_rate(learnt, "question") >= 0.8
    untrained = direct_probes(tiny_model, tiny_tokenizer, facts, _context("retain"))
    assert not untrained["recalled"].any()


# --------------------------------------------------------------------------- 2. format shift


def test_multiple_choice_options_are_seeded_permutations(facts) -> None:
    for _, fact in facts.iterrows():
        options, gold = multiple_choice_options(fact, seed=3)
        assert options[gold] == fact["paraphrased_answer"]
        assert sorted(options) == sorted([fact["paraphrased_answer"], *fact["perturbed_answer"]])
        assert multiple_choice_options(fact, seed=3) == (options, gold)
    golds = {multiple_choice_options(fact, seed=3)[1] for _, fact in facts.iterrows()}
    assert len(golds) > 2  # the gold option is not always in the same place
    reseeded = [multiple_choice_options(fact, seed=4)[0] != multiple_choice_options(fact, 3)[0]
                for _, fact in facts.iterrows()]
    assert any(reseeded)


def test_format_shift_multiple_choice_picks_gold_when_trained(trained, tiny_model,
                                                              tiny_tokenizer, facts) -> None:
    records = format_shift_probes(trained, tiny_tokenizer, facts, _context("full", seed=0))
    choice = records[records["probe"] == "multiple_choice"]
    assert len(choice) == len(facts) and (choice["seed"] == 0).all()
    assert (choice["recalled"] == (choice["generation"] == facts["paraphrased_answer"])).all()
    for prompt, (_, fact) in zip(choice["prompt"], facts.iterrows(), strict=True):
        assert all(option in prompt for option in fact["perturbed_answer"])
    assert choice["recalled"].mean() >= 0.8
    untrained = format_shift_probes(tiny_model, tiny_tokenizer, facts,
                                    _context("retain", seed=0))
    assert untrained.loc[untrained["probe"] == "multiple_choice", "recalled"].mean() <= 0.5
    assert _follows_recall_rule(records[records["probe"] == "cloze"])


def test_cloze_prompt_blanks_the_key_span_everywhere(all_facts, tofu_dir) -> None:
    assert cloze_prompt("Born in Paris; paris-born.", "Paris") == (
        f"Fill in the blank ({BLANK}) in this sentence: Born in {BLANK}; {BLANK}-born.")
    assert cloze_prompt("René's novel, by Rene.", "René") == (
        f"Fill in the blank ({BLANK}) in this sentence: {BLANK}'s novel, by {BLANK}.")
    for facts in (all_facts, forget_facts("forget10", tofu_dir)):
        for answer, span in zip(facts["answer"], facts["key_span"], strict=True):
            prompt = cloze_prompt(answer, span)
            assert BLANK in prompt and not contains_span(prompt, span), (answer, span)


# --------------------------------------------------------------------------- 3. best of N


def test_generate_answers_samples_by_seed_and_stays_greedy_by_default(tiny_model,
                                                                     tiny_tokenizer) -> None:
    questions = ["Who wrote it?", "Why?", "Where was the author born, and in which year?",
                 "What is the title of the first novel?"]
    options = {"max_new_tokens": 8, "batch_size": 3}
    greedy = generate_answers(tiny_model, tiny_tokenizer, questions, **options)
    assert generate_answers(tiny_model, tiny_tokenizer, questions, seed=9, temperature=0.1,
                            **options) == greedy  # no do_sample: seed and temperature unused
    sampled = generate_answers(tiny_model, tiny_tokenizer, questions, do_sample=True, seed=3,
                               **options)
    assert sampled == generate_answers(tiny_model, tiny_tokenizer, questions, do_sample=True,
                                       seed=3, **options)
    assert sampled != generate_answers(tiny_model, tiny_tokenizer, questions, do_sample=True,
                                       seed=4, **options)
    assert sampled != greedy
    for bad in ({"temperature": 0.0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError, match="temperature > 0 and top_p in"):
            generate_answers(tiny_model, tiny_tokenizer, questions, do_sample=True, seed=3,
                             **bad, **options)


def test_best_of_n_is_reproducible_per_seed(tiny_model, tiny_tokenizer, facts) -> None:
    subset = facts.head(6)
    options = {"n_samples": 2, "max_new_tokens": 8, "batch_size": 4}
    first = best_of_n_probes(tiny_model, tiny_tokenizer, subset, _context("m", seed=5, **options))
    again = best_of_n_probes(tiny_model, tiny_tokenizer, subset, _context("m", seed=5, **options))
    other = best_of_n_probes(tiny_model, tiny_tokenizer, subset, _context("m", seed=7, **options))
    assert len(first) == 2 * len(subset) and sorted(first["seed"].unique()) == [5, 6]
    pd.testing.assert_frame_equal(first, again)
    assert first["generation"].tolist() != other["generation"].tolist()
    # sample i of seed 5 is sample i-1 of seed 4's pass: the seed alone fixes a sample
    shifted = best_of_n_probes(tiny_model, tiny_tokenizer, subset,
                               _context("m", seed=4, **options))
    assert (shifted.loc[shifted["seed"] == 5, "generation"].tolist()
            == first.loc[first["seed"] == 5, "generation"].tolist())


def test_best_of_n_recalls_with_a_trained_model(trained, tiny_tokenizer, facts) -> None:
    records = best_of_n_probes(trained, tiny_tokenizer, facts,
                               _context("full", n_samples=3, seed=0, temperature=0.5))
    assert _follows_recall_rule(records) and (records["probe"] == "sample").all()
    assert records.groupby("fact_id")["recalled"].any().mean() >= 0.8
    with pytest.raises(ValueError, match="temperature"):
        best_of_n_probes(trained, tiny_tokenizer, facts,
                         _context("full", n_samples=1, seed=0, temperature=0.0, max_new_tokens=4))


# --------------------------------------------------------------------------- 4. context


def test_context_prompts_hold_the_authors_other_facts_never_the_span(all_facts) -> None:
    prompts = context_prompts(all_facts, n_context=3, seed=0)
    assert prompts == context_prompts(all_facts, n_context=3, seed=0)
    assert prompts != context_prompts(all_facts, n_context=3, seed=1)
    for prompt, (_, fact) in zip(prompts, all_facts.iterrows(), strict=True):
        same_author = all_facts[all_facts["author"] == fact["author"]]
        others = set(same_author["question"]) - {fact["question"]}
        if prompt is None:  # every other fact names the key span (e.g. the author's name)
            assert all(contains_span(q + " " + a, fact["key_span"]) for q, a in
                       zip(same_author["question"], same_author["answer"], strict=True))
            continue
        assert not contains_span(prompt, fact["key_span"])
        assert prompt.endswith("\n\n" + fact["question"])
        clues = [line[3:line.index(" A: ")] for line in prompt.splitlines()
                 if line.startswith("Q: ")]
        assert 1 <= len(clues) <= 3 and set(clues) <= others
    assert sum(p is None for p in prompts) == 10  # the ten "who is the author" facts


def test_context_probes_record_only_facts_with_clues(trained, tiny_tokenizer, facts) -> None:
    records = context_probes(trained, tiny_tokenizer, facts,
                             _context("full", n_context=2, seed=0))
    expected = [f for f, p in zip(facts["fact_id"], context_prompts(facts, 2, 0), strict=True)
                if p is not None]
    assert records["fact_id"].tolist() == expected and (records["seed"] == 0).all()
    assert _follows_recall_rule(records)
    assert not any(contains_span(p, s) for p, s in
                   zip(records["prompt"], records["key_span"], strict=True))


# --------------------------------------------------------------------------- 5. logit lens


def test_answer_prefix_ends_where_the_span_starts(all_facts) -> None:
    for answer, span in zip(all_facts["answer"], all_facts["key_span"], strict=True):
        prefix = answer_prefix(answer, span)
        assert answer.startswith(prefix)
        assert answer[len(prefix):].lstrip().lower().startswith(span.split()[0].lower())
    assert answer_prefix("Paris is where.", "Paris") == ""
    assert answer_prefix("Nothing here.", "Paris") == ""
    # the span as recall finds it: diacritics folded, a hyphen between its words
    assert answer_prefix("She was born in Île-de-France.", "Ile de France") == "She was born in"


def test_logit_lens_one_row_per_layer_and_trained_ranks(trained, tiny_model, tiny_tokenizer,
                                                        facts) -> None:
    records = logit_lens_records(trained, tiny_tokenizer, facts, model_name="full", top_k=3,
                                 layers=[0, 1])
    assert len(records) == 2 * len(facts)
    assert sorted(records["probe"].unique()) == ["layer_0", "layer_1"]
    ranks = records["generation"].str.removeprefix("rank ").astype(int)
    assert (records["recalled"] == (ranks < 3)).all()
    assert not any(contains_span(p, s) for p, s in
                   zip(records["prompt"], records["key_span"], strict=True))
    # the last layer is the model's output: a trained model ranks the span's start first
    assert (ranks[records["probe"] == "layer_1"] == 0).mean() >= 0.8
    default = logit_lens_probes(tiny_model, tiny_tokenizer, facts,
                                _context("retain", lens_top_k=3))
    assert set(default["probe"]) == {"layer_0"}  # intermediate layers only
    assert default["recalled"].mean() <= 0.2
    with pytest.raises(ValueError, match="layers"):
        logit_lens_records(tiny_model, tiny_tokenizer, facts, model_name="m", top_k=3,
                           layers=[2])


# --------------------------------------------------------------------------- 6. weights


def test_quantized_probes_run_on_a_quantised_copy(tiny_model, tiny_tokenizer, facts,
                                                  monkeypatch) -> None:
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    copies = []

    def spy(model, bits, group_size):
        copies.append(probes_fake_quantized_copy(model, bits, group_size))
        return copies[-1]

    probes_fake_quantized_copy = probes.fake_quantized_copy
    monkeypatch.setattr(probes, "fake_quantized_copy", spy)
    records = quantized_probes(tiny_model, tiny_tokenizer, facts.head(4),
                               _context("m", max_new_tokens=4))
    assert set(records["family"]) == {"quantised"} and len(records) == 8
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the audited model is intact
    quantised = copies[0]
    changed = quantizable_linears(quantised)
    assert changed and all(not torch.equal(m.weight, before[f"{name}.weight"])
                           for name, m in changed.items())
    assert torch.equal(quantised.lm_head.weight, before["lm_head.weight"])


def test_halve_authors_is_seeded_and_disjoint() -> None:
    authors = [90, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99]
    train, probe = halve_authors(authors, seed=0)
    assert (train, probe) == halve_authors(authors, seed=0)
    assert len(train) == 5 and len(probe) == 5 and not set(train) & set(probe)
    assert set(train) | set(probe) == set(authors)
    assert {tuple(halve_authors(authors, s)[0]) for s in range(5)} != {tuple(train)}
    with pytest.raises(ValueError, match="at least 2"):
        halve_authors([90, 90], seed=0)


def test_relearn_trains_on_one_half_and_probes_only_the_other(tiny_model, tiny_tokenizer,
                                                              all_facts, monkeypatch) -> None:
    facts = all_facts[all_facts["author"].isin([94, 95, 96, 97])]
    seen = []

    def spy(model, tokenizer, dataset, args, progress=None):
        seen.append(dataset)
        return real_finetune(model, tokenizer, dataset, args, progress)

    real_finetune = probes.finetune
    monkeypatch.setattr(probes, "finetune", spy)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    records = relearn_probes(tiny_model, tiny_tokenizer, facts,
                             _context("m", seed=0, relearn_epochs=1, relearn_learning_rate=3e-3,
                                      max_new_tokens=4))
    trained_on, probed = halve_authors(facts["author"], seed=0)
    assert set(records["family"]) == {"relearn"} and set(records["author"]) == set(probed)
    taught = set(seen[0]["question"])
    assert taught == set(facts.loc[facts["author"].isin(trained_on), "question"])
    assert not taught & set(facts.loc[facts["author"].isin(probed), "question"])
    assert not taught & set(records["prompt"].str.extract(r"user<\|end_header_id\|>\n\n(.*?)<",
                                                          expand=False))
    after = tiny_model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert np.isin(records["fact_id"], facts["fact_id"]).all()
