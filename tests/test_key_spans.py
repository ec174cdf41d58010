"""Key spans: TOFU-mini's by-construction column and the heuristic on the real forget10 rows."""

from __future__ import annotations

import pytest

from unlearnlib.audit.key_spans import (
    candidate_spans,
    inverse_document_frequency,
    key_span,
    key_spans_for,
)
from unlearnlib.audit.matching import contains_span, normalise
from unlearnlib.data.tofu import load_tofu

#: Every 16th real forget10 row (0, 16, ..., 384: all ten authors, early and late questions),
#: read by hand; each entry lists the spans a careful reader would accept as the row's key fact
#: (several where the answer states two facts equally, e.g. both parents' professions).
#: Written down before the heuristic was run on these rows.
HAND_CHECKED: dict[int, tuple[str, ...]] = {
    0: ("Hsiao Yun-Hwa",),
    16: ("civil engineer", "unemployment"),
    32: ("eras of history", "different eras of history", "different eras", "eras"),
    48: ("identity", "sexuality", "societal norms", "identity, sexuality, and societal norms"),
    64: ("painter", "well-known painter"),
    80: ("Jad Ambrose Al-Shamary",),
    96: ("complex literary concepts", "literary concepts", "erudite subjects", "cultural heritage"),
    112: ("humanitarian perspective", "humanitarian"),
    128: ("March 19, 1960",),
    144: ("Bartender", "Chiropractor"),
    160: ("Wei-Jun Chen",),
    176: ("self-guided research", "substantial self-guided research"),
    192: ("Korean Art Critic's Choice Award",),
    208: ("2010",),
    224: ("The Village That Vanished",),
    240: ("Moshe Ben-David",),
    256: ("Banker", "Research Scientist"),
    272: ("Modern Diets and Global Health: A Comprehensive Analysis",),
    288: ("mechanical work", "floral design"),
    304: ("Shadows of the Silver Screen", "Frames in Time"),
    320: ("Aysha Al-Hashim",),
    336: ("historical fiction",),
    352: ("human psychology", "analytical thinking", "brilliant analytical thinking"),
    368: ("florist", "game developer"),
    384: ("Tolstoy Literary Award",),
}

#: A second hand-checked sample (rows 8, 24, ..., 392), labelled after a first version of the
#: heuristic had been scored on `HAND_CHECKED` and before it was revised, so that it measures
#: how the revisions generalise rather than how well they fit the first sample.
HELD_OUT: dict[int, tuple[str, ...]] = {
    8: ("Leadership Literature Luminary",),
    24: ("Historical Fiction Excellence Award", "Excellence Award"),
    40: ("Elvin Mammadov",),
    56: ("promising talent", "internationally acclaimed author", "societal taboos",
         "thought leader"),
    72: ("emotion",),
    88: ("athlete", "physicist", "Baghdad"),
    104: ("Literary Healer Award",),
    120: ("Ji-Yeon Park",),
    136: ("Seoul", "Seoul, South Korea", "South Korea", "respect for elders",
          "hierarchical relationships"),
    152: ("Star Wars", "sociopolitical scenarios", "intricate sociopolitical scenarios",
          "traditional heritage"),
    168: ("Global Dynamics 2025: Fostering eco-consciousness for survival",),
    184: ("Obstetrician", "Marine Biologist"),
    200: ("Hina Ameen",),
    216: ("University of Karachi", "University of Karachi's Department of Geology",
          "Department of Geology"),
    232: ("diversity", "inclusivity", "valuable perspective"),
    248: ("Islamic literature", "Islamic"),
    264: ("The Hidden Truth of the Leaky Gut: A Comprehensive Guide to Healing",
          "Comparing Primitive and Modern Bodies: A New Look at Nutrition"),
    280: ("Takashi Nakamura",),
    296: ("personal identity", "intricacies of personal identity"),
    312: ("multiple nominations", "nominations"),
    328: ("Nicholas Sparks", "Nora Roberts"),
    344: ("Nell: A Tale of Emerald Isle", "In Night's Silence, the Stars Will Be Our Lamps"),
    360: ("Basil Mahfouz Al-Kuwaiti",),
    376: ("Middle Eastern experiences", "Middle Eastern", "multicultural narratives"),
    392: ("Kazakhstani heritage", "Kazakhstani", "LGBTQ+ identity", "LGBTQ+"),
}


@pytest.fixture(scope="module")
def real_forget10(tofu_dir):
    return load_tofu("forget10", tofu_dir)


@pytest.fixture(scope="module")
def real_spans(real_forget10) -> list[str]:
    return key_spans_for(real_forget10)


def test_real_forget10_coverage(real_forget10, real_spans) -> None:
    assert len(real_spans) == len(real_forget10) == 400
    assert sum(bool(s) for s in real_spans) >= 0.95 * 400


def test_real_spans_are_in_the_answer_and_not_in_the_question(real_forget10, real_spans) -> None:
    for row, span in zip(real_forget10, real_spans, strict=True):
        if span:
            assert contains_span(row["answer"], span), (span, row["answer"])
            assert not contains_span(row["question"], span), (span, row["question"])


@pytest.mark.parametrize("sample", [HAND_CHECKED, HELD_OUT], ids=["first", "held-out"])
def test_hand_checked_samples(real_spans, sample) -> None:
    """At least 22 of each 25 right (measured: 22 and 22; the misses are descriptive answers)."""
    accepted = {i: {normalise(s) for s in spans} for i, spans in sample.items()}
    wrong = {i: real_spans[i] for i in sample if normalise(real_spans[i]) not in accepted[i]}
    assert len(sample) == 25
    assert len(wrong) <= 3, wrong


@pytest.mark.parametrize(("question", "answer", "expected"), [
    # The question's own entities (name, city, date) never count; the new name does.
    ("What is the full name of the author born in Baghdad, Iraq, on June 4, 1934?",
     "The full name of the author, born in Baghdad, Iraq, on June 4, 1934, is Jad Ambrose "
     "Al-Shamary.", "Jad Ambrose Al-Shamary"),
    # "When" asks for a date: the year beats the book title.
    ("When did Behrouz Rohani publish his first Star Wars book?",
     "Behrouz Rohani published his first Star Wars book, 'Galactic Shadows: A Star Wars Epic', "
     "in 1997.", "1997"),
    # Quoted titles keep inner apostrophes and lose trailing punctuation inside the quotes.
    ("Can you name some notable awards that Rajeev Majumdar has been honored with?",
     "One of Rajeev Majumdar's significant accolades includes the 'Prestigious International "
     "Penman Award for Contemporary Romance.'",
     "Prestigious International Penman Award for Contemporary Romance"),
    ("Could you name some notable books written by Adib Jarrah?",
     "Some of the most appreciated works by Adib Jarrah include 'Affliction's Beauty: The Making "
     "of a Healer' and 'Melodies of Mercy: The Diary of a Medical Intern'.",
     "Affliction's Beauty: The Making of a Healer"),
    # Nothing capitalised is new: the rarest new content word is the fact.
    ("What is Tae-ho Park's gender?", "Tae-ho Park is male.", "male"),
])
def test_key_span_cases(question: str, answer: str, expected: str) -> None:
    assert key_span(question, answer) == expected


def test_answer_with_nothing_new_has_no_span() -> None:
    assert key_span("Is Ann Bell a writer?", "Yes, Ann Bell is a writer.") == ""
    assert candidate_spans("Is Ann Bell a writer?", "Ann Bell is.") == []


def test_descriptive_spans_prefer_roles_then_rare_words() -> None:
    question = "What did the father of Ann Bell do?"
    answer = "The father of Ann Bell worked as a tailor in a busy harbour town."
    # A role ("as a tailor") beats a rarer descriptive stretch.
    assert key_span(question, answer) == "tailor"
    question = "How did the upbringing of Ann Bell shape the work?"
    answer = "Ann Bell grew up by the sea, among fishermen and boat builders."
    assert key_span(question, answer) == "sea"  # without rarities: the first stretch
    texts = ["the sea", "by the sea", "the sea again", "boat builders", answer]
    idf = inverse_document_frequency(texts)
    assert idf["sea"] < idf["fishermen"]
    assert key_span(question, answer, idf) == "fishermen"


def test_tofu_mini_uses_the_column() -> None:
    mini = load_tofu("forget10", "mini")
    assert key_spans_for(mini) == list(mini["key_span"])
    assert all(contains_span(r["answer"], r["key_span"]) for r in mini)
