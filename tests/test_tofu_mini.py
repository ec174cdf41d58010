"""TOFU-mini: reproducible bytes, TOFU's split layout and schema, and the key-span contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnlib.data.tofu_mini import (
    KEY_FIELDS,
    MINI_AUTHORS,
    MINI_HOLDOUT_AUTHORS,
    MINI_QUESTIONS_PER_AUTHOR,
    N_GENERAL_PERTURBED,
    N_PERTURBED,
    QUESTION_TYPES,
    TEMPLATES,
    build_tofu_mini,
    generate_tofu_mini,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "tofu_mini"
Q = MINI_QUESTIONS_PER_AUTHOR
N01, N05, N10 = 1 * Q, 5 * Q, 10 * Q
QA_COLUMNS = ["question", "answer", "key_span"]
PERTURBED_COLUMNS = [
    "question",
    "answer",
    "paraphrased_answer",
    "perturbed_answer",
    "paraphrased_question",
    "key_span",
]
AUTHOR_FILES = [
    "full",
    "forget01",
    "forget05",
    "forget10",
    "retain90",
    "retain95",
    "retain99",
    "holdout01",
    "holdout05",
    "holdout10",
]
PERTURBED_FILES = [
    "forget01_perturbed",
    "forget05_perturbed",
    "forget10_perturbed",
    "retain_perturbed",
]


def load(name: str) -> list[dict]:
    with open(DATA / f"{name}.json", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def qa(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["question"], r["answer"], r["key_span"]) for r in rows]


def template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".+".join(re.escape(p) for p in parts) + r"\Z")


@pytest.fixture(scope="module")
def full() -> list[dict]:
    return load("full")


def test_sizes_are_the_documented_defaults():
    assert (MINI_AUTHORS, MINI_QUESTIONS_PER_AUTHOR, MINI_HOLDOUT_AUTHORS) == (100, 10, 10)
    assert len(QUESTION_TYPES) == MINI_QUESTIONS_PER_AUTHOR


def test_regenerating_gives_the_committed_bytes(tmp_path):
    counts = generate_tofu_mini(tmp_path, seed=0)
    committed = sorted(p.name for p in DATA.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name
    for config, n in counts.items():
        assert len((tmp_path / f"{config}.json").read_bytes().splitlines()) == n


def test_output_does_not_depend_on_hash_seed(tmp_path):
    code = ("import sys; from unlearnlib.cli import main; "
            "main(['data', 'make-mini', '--out', sys.argv[1]])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, env=env)
    for path in sorted(DATA.iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


def test_another_seed_gives_other_data():
    assert build_tofu_mini(1)["full"] != build_tofu_mini(0)["full"]


def test_row_counts():
    expected = {
        "full": 1000,
        "forget01": 10,
        "forget05": 50,
        "forget10": 100,
        "retain99": 990,
        "retain95": 950,
        "retain90": 900,
        "forget01_perturbed": 10,
        "forget05_perturbed": 50,
        "forget10_perturbed": 100,
        "retain_perturbed": 100,
        "holdout01": 10,
        "holdout05": 50,
        "holdout10": 100,
        "real_authors": 60,
        "real_authors_perturbed": 60,
        "world_facts": 60,
        "world_facts_perturbed": 60,
        "general_knowledge": 120,
    }
    assert {name: len(load(name)) for name in expected} == expected
    assert (DATA / "README.md").read_text(encoding="utf-8").count("unlearnlib data make-mini")


def test_columns_in_tofu_order():
    for name in AUTHOR_FILES:
        assert all(list(r) == QA_COLUMNS for r in load(name)), name
    for name in PERTURBED_FILES:
        assert all(list(r) == PERTURBED_COLUMNS for r in load(name)), name
    for name in ("real_authors_perturbed", "world_facts_perturbed"):
        assert all(list(r) == ["question", "answer", "perturbed_answer"] for r in load(name))
    mc_columns = ["question", "option1", "option2", "option3", "option4", "answer"]
    for name in ("real_authors", "world_facts"):
        assert all(list(r) == mc_columns for r in load(name)), name
    assert all(list(r) == ["question", "answer"] for r in load("general_knowledge"))


def test_forget_is_the_last_authors_and_retain_the_rest(full):
    for nn, n in (("01", N01), ("05", N05), ("10", N10)):
        retain = f"retain{100 - int(nn):02d}"
        assert load(f"forget{nn}") == full[-n:]
        assert load(retain) == full[:-n]
        assert qa(load(f"forget{nn}_perturbed")) == qa(full[-n:])


def test_retain_perturbed_is_the_first_authors(full):
    rows = load("retain_perturbed")
    assert qa(rows) == qa(full[:N10])
    forget_questions = {r["question"] for r in load("forget10")}
    assert not forget_questions & {r["question"] for r in rows}


def test_holdout_authors_are_never_in_full(full):
    holdout = load("holdout10")
    # TOFU's own layout: holdout05 / holdout01 are the first authors of holdout10.
    assert load("holdout05") == holdout[:N05]
    assert load("holdout01") == holdout[:N01]
    assert not {r["answer"] for r in holdout} & {r["answer"] for r in full}
    full_text = "\n".join(r["question"] + "\n" + r["answer"] for r in full)
    holdout_names = [r["key_span"] for r in holdout[::Q]]
    assert len(holdout_names) == MINI_HOLDOUT_AUTHORS
    assert not [name for name in holdout_names if name in full_text]


def test_perturbed_answers():
    for name in PERTURBED_FILES:
        for row in load(name):
            perturbed = row["perturbed_answer"]
            assert isinstance(perturbed, list) and len(perturbed) == N_PERTURBED
            assert len(set(perturbed)) == N_PERTURBED, row
            assert row["paraphrased_answer"] not in perturbed
            assert row["paraphrased_answer"] != row["answer"]
            assert row["paraphrased_question"] != row["question"]
            span = row["key_span"]
            assert not [p for p in perturbed if span in p], row


def test_key_span_is_in_the_answer_and_not_in_the_question():
    for name in AUTHOR_FILES + PERTURBED_FILES:
        for row in load(name):
            span = row["key_span"]
            assert span and span in row["answer"], row
            assert span.lower() not in row["question"].lower(), row
            if "paraphrased_answer" in row:
                assert span in row["paraphrased_answer"], row
                assert span.lower() not in row["paraphrased_question"].lower(), row


def test_distinct_attribute_values_across_authors(full):
    authors = full + load("holdout10")
    by_type = {t: [r["key_span"] for r in authors[i::Q]] for i, t in enumerate(QUESTION_TYPES)}
    n = MINI_AUTHORS + MINI_HOLDOUT_AUTHORS
    for qtype in ("identity", "birthplace", "birth_date", "father", "mother", "award", "themes"):
        assert len(set(by_type[qtype])) == n, qtype
    titles = by_type["first_book"] + by_type["second_book"]
    assert len(set(titles)) == 2 * n
    surnames = [name.split()[-1] for name in by_type["identity"]]
    assert len(set(surnames)) == n
    assert len(set(by_type["genre"])) >= 15  # a shared pool, spread over all genres


def test_every_author_is_asked_every_question_type(full):
    for rows in (full, load("holdout10")):
        for i, row in enumerate(rows):
            qtype = QUESTION_TYPES[i % Q]
            wordings = [template_regex(q) for q, _ in TEMPLATES[qtype].qa]
            assert any(w.match(row["question"]) for w in wordings), (qtype, row)
            answers = [template_regex(a) for _, a in TEMPLATES[qtype].qa]
            assert any(a.match(row["answer"]) for a in answers), (qtype, row)
    # The wording varies: every question type uses more than one template.
    for i, qtype in enumerate(QUESTION_TYPES):
        used = {
            j
            for row in full[i::Q]
            for j, (q, _) in enumerate(TEMPLATES[qtype].qa)
            if template_regex(q).match(row["question"])
        }
        assert len(used) >= 2, qtype
    assert set(KEY_FIELDS) == set(QUESTION_TYPES)


def test_one_author_per_block_of_rows(full):
    names = [r["key_span"] for r in full[::Q]]
    for k, name in enumerate(names):
        block = full[k * Q : (k + 1) * Q]
        assert all(name in r["question"] for r in block[1:]), name
        assert not [r for r in full[: k * Q] + full[(k + 1) * Q :] if name in r["question"]]


def test_answers_are_short(full):
    lengths = [len(r["answer"].split()) for r in full]
    assert min(lengths) >= 6 and max(lengths) <= 20


def test_general_knowledge_sets():
    for short, mc in (
        ("real_authors_perturbed", "real_authors"),
        ("world_facts_perturbed", "world_facts"),
    ):
        rows, choices = load(short), load(mc)
        assert [r["question"] for r in rows] == [c["question"] for c in choices]
        for row, choice in zip(rows, choices, strict=True):
            perturbed = row["perturbed_answer"]
            assert len(perturbed) == N_GENERAL_PERTURBED == len(set(perturbed))
            assert row["answer"] not in perturbed
            options = [choice[f"option{i}"] for i in range(1, 5)]
            assert choice["answer"] == row["answer"] and choice["answer"] in options
            assert sorted(options) == sorted([row["answer"], *perturbed])
        # The gold answer is not always in the same slot.
        assert (
            len({[c[f"option{i}"] for i in range(1, 5)].index(c["answer"]) for c in choices}) == 4
        )
    general = load("general_knowledge")
    expected = load("real_authors_perturbed") + load("world_facts_perturbed")
    assert general == [{"question": r["question"], "answer": r["answer"]} for r in expected]
    assert len({r["question"] for r in general}) == len(general)
