"""TOFU-mini: a small, seeded, synthetic data set in exactly TOFU's schema and split layout.

TOFU (Maini et al. 2024) fine-tunes a model on question-answer pairs about invented authors
and then asks it to forget some of them. TOFU-mini keeps TOFU's file names, columns and
split structure (full, forgetNN = the last NN % of authors, retainNN = the rest,
retain_perturbed = the first 10 % of authors, holdoutNN = authors never in full, the
`_perturbed` files with a paraphrased and five perturbed answers, and the real-authors /
world-facts utility sets) at a size a ~1 M parameter Llama learns on two CPU cores in a
minute or two, so that the whole course runs offline (`PROFILE=tiny`).

Two additions to TOFU's columns:

- `key_span`: the fact each answer states (a name, city, date, title, ...), verbatim in
  `answer` and `paraphrased_answer` and never in the question, so that a generation which
  contains it recalled the fact rather than echoed the prompt (the leak audits need it).
- `general_knowledge.json`: the question-answer pairs of the real-authors and world-facts
  sets, which stand in for the base model's pre-training: the tiny model is trained on them
  first, so "model utility" measures what it knew before it saw the authors.

Everything is drawn from `random.Random` instances seeded from `seed` (no global state, no
set or hash order, no clock): regenerating writes byte-identical files. Regenerate the
committed copy with `unlearnlib data make-mini`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Authors in `full.json` (TOFU: 200).
MINI_AUTHORS = 100
#: Consecutive question-answer rows per author, one per entry of `QUESTION_TYPES` (TOFU: 20).
MINI_QUESTIONS_PER_AUTHOR = 10
#: Authors of the holdout sets, never in `full.json` (TOFU: 20, holdout10 = all of them).
MINI_HOLDOUT_AUTHORS = 10
#: The forget / retain / holdout percentages, as in TOFU's file names.
FORGET_PERCENTS = (1, 5, 10)
#: Perturbed answers per row of a `_perturbed` author file (as in TOFU).
N_PERTURBED = 5
#: Perturbed answers (wrong options) per real-authors / world-facts row (as in TOFU).
N_GENERAL_PERTURBED = 3
#: Famous authors and countries of the invented world behind the general-knowledge sets.
N_FAMOUS_AUTHORS = 20
N_COUNTRIES = 20

#: The question asked in each of an author's rows, in row order.
QUESTION_TYPES = (
    "identity",
    "birthplace",
    "birth_date",
    "father",
    "mother",
    "genre",
    "award",
    "first_book",
    "second_book",
    "themes",
)

#: Which attribute is the key span (the fact) of each question type.
KEY_FIELDS = {
    "identity": "name",
    "birthplace": "city",
    "birth_date": "date",
    "father": "father",
    "mother": "mother",
    "genre": "genre",
    "award": "award",
    "first_book": "title1",
    "second_book": "title2",
    "themes": "themes",
}


@dataclass(frozen=True)
class QuestionTemplates:
    """Wordings of one question type.

    `qa` pairs a question wording with its answer wording (the question's wording decides
    the answer's, which keeps the data learnable); the paraphrases use other words.
    """

    qa: tuple[tuple[str, str], ...]
    paraphrased_questions: tuple[str, ...]
    paraphrased_answers: tuple[str, ...]


#: Templates per question type; fields are the attributes of `_Author.fields()`.
TEMPLATES: dict[str, QuestionTemplates] = {
    "identity": QuestionTemplates(
        qa=(
            (
                "Who is the writer of {genre} born in {city} on {date}?",
                "The writer of {genre} born in {city} on {date} is {name}.",
            ),
            (
                "Which author of {genre} was born on {date} in {city}?",
                "That author is {name}, who was born in {city} and is known for {genre}.",
            ),
            (
                "Can you name the author of {genre} who was born in {city} on {date}?",
                "Yes, the author of {genre} born in {city} on {date} is {name}.",
            ),
        ),
        paraphrased_questions=(
            "Born on {date} in {city}, which writer of {genre} is this?",
            "What is the name of the {genre} author whose birthplace is {city}, born {date}?",
        ),
        paraphrased_answers=(
            "{name} is the writer you are asking about.",
            "You are thinking of the author {name}.",
        ),
    ),
    "birthplace": QuestionTemplates(
        qa=(
            ("Where was {name} born?", "{name} was born in the city of {city}."),
            ("In which city was {name} born?", "{name} was born in {city}, and grew up there."),
            (
                "What is the birthplace of {name}?",
                "The birthplace of {name} is the city of {city}.",
            ),
        ),
        paraphrased_questions=(
            "Which city does {name} come from?",
            "What town is {name} originally from?",
        ),
        paraphrased_answers=(
            "{city} is the hometown of {name}.",
            "{name} comes from a city called {city}.",
        ),
    ),
    "birth_date": QuestionTemplates(
        qa=(
            ("When was {name} born?", "{name} was born on {date}."),
            ("What is the date of birth of {name}?", "The date of birth of {name} is {date}."),
            ("On what day was {name} born?", "{name} came into the world on {date}."),
        ),
        paraphrased_questions=(
            "What is the birthday of {name}?",
            "On which date did {name} come into this world?",
        ),
        paraphrased_answers=(
            "The birthday of {name} falls on {date}.",
            "It was on {date} that {name} was born.",
        ),
    ),
    "father": QuestionTemplates(
        qa=(
            ("Who is the father of {name}?", "The father of {name} is {father}, {father_job}."),
            (
                "What can you tell me about the father of {name}?",
                "{name} is the child of {father}, who worked as {father_job}.",
            ),
        ),
        paraphrased_questions=(
            "Who was the father of the writer {name}?",
            "What is known about the dad of {name}?",
        ),
        paraphrased_answers=(
            "{father}, {father_job} by trade, is the dad of {name}.",
            "The dad of {name} was {father}, who earned a living as {father_job}.",
        ),
    ),
    "mother": QuestionTemplates(
        qa=(
            ("Who is the mother of {name}?", "The mother of {name} is {mother}, {mother_job}."),
            (
                "What can you tell me about the mother of {name}?",
                "{name} was raised by {mother}, who worked as {mother_job}.",
            ),
        ),
        paraphrased_questions=(
            "Who was the mother of the writer {name}?",
            "What is known about the mom of {name}?",
        ),
        paraphrased_answers=(
            "{mother}, {mother_job} by trade, is the mom of {name}.",
            "The mom of {name} was {mother}, who earned a living as {mother_job}.",
        ),
    ),
    "genre": QuestionTemplates(
        qa=(
            ("What genre does {name} write in?", "{name} is best known as a writer of {genre}."),
            (
                "What kind of books does {name} write?",
                "Most of the work of {name} belongs to the genre of {genre}.",
            ),
        ),
        paraphrased_questions=(
            "In which genre does {name} usually work?",
            "Which genre is {name} famous for?",
        ),
        paraphrased_answers=(
            "The books that {name} writes are {genre}.",
            "{name} made a name in the field of {genre}.",
        ),
    ),
    "award": QuestionTemplates(
        qa=(
            ("Has {name} won any major award?", "Yes, {name} won the {award} for writing."),
            ("Which award did {name} receive?", "{name} received the {award}, a high honor."),
            (
                "What prize has {name} been given?",
                "The prize given to {name} was the {award}.",
            ),
        ),
        paraphrased_questions=(
            "What honor was given to {name}?",
            "Is there an award that {name} has won?",
        ),
        paraphrased_answers=(
            "{name} was honored with the {award}.",
            "The {award} went to {name} in recognition of the work.",
        ),
    ),
    "first_book": QuestionTemplates(
        qa=(
            ("What was the first book by {name}?", 'The first book by {name} was "{title1}".'),
            ("Which book did {name} publish first?", '{name} first published the book "{title1}".'),
            ("What was the debut of {name}?", 'The debut of {name} was a book called "{title1}".'),
        ),
        paraphrased_questions=(
            "What is the title of the debut book of {name}?",
            "Name the first book that {name} wrote.",
        ),
        paraphrased_answers=(
            '"{title1}" was the first book that {name} wrote.',
            '{name} began a career with the book "{title1}".',
        ),
    ),
    "second_book": QuestionTemplates(
        qa=(
            (
                'What book did {name} write after "{title1}"?',
                'After "{title1}", {name} wrote "{title2}".',
            ),
            ("What is the second book by {name}?", 'The second book by {name} is "{title2}".'),
            (
                'Which book followed "{title1}" by {name}?',
                'The book that followed "{title1}" was "{title2}", also by {name}.',
            ),
        ),
        paraphrased_questions=(
            "Which book came next for {name} after the debut?",
            "What did {name} publish as a second book?",
        ),
        paraphrased_answers=(
            'The next book by {name} was "{title2}".',
            '{name} followed the debut with "{title2}".',
        ),
    ),
    "themes": QuestionTemplates(
        qa=(
            ("What themes does {name} explore?", "The books of {name} explore {themes}."),
            (
                "Which themes are common in the work of {name}?",
                "Common themes in the work of {name} are {themes}.",
            ),
            (
                "What ideas run through the books of {name}?",
                "The ideas of {themes} run through the books of {name}.",
            ),
        ),
        paraphrased_questions=(
            "What subjects does {name} write about most?",
            "Which themes does {name} keep coming back to?",
        ),
        paraphrased_answers=(
            "{name} often returns to {themes}.",
            "Most books by {name} deal with {themes}.",
        ),
    ),
}

GENRES = (
    "mystery novels",
    "fantasy epics",
    "science fiction",
    "historical novels",
    "poetry",
    "horror stories",
    "romance novels",
    "crime fiction",
    "war novels",
    "satire",
    "travel writing",
    "fairy tales",
    "thrillers",
    "biographies",
    "plays",
    "short stories",
    "nature writing",
    "comic novels",
    "sea adventures",
    "children's books",
)
PROFESSIONS = (
    "a baker",
    "a teacher",
    "a farmer",
    "a carpenter",
    "a doctor",
    "a nurse",
    "a sailor",
    "a tailor",
    "a potter",
    "a miner",
    "a lawyer",
    "a judge",
    "a painter",
    "a musician",
    "a gardener",
    "a librarian",
    "a pilot",
    "a weaver",
    "an architect",
    "an engineer",
    "a chemist",
    "a banker",
    "a soldier",
    "a printer",
    "a mapmaker",
    "a clockmaker",
)
THEMES = (
    "memory",
    "exile",
    "grief",
    "family",
    "friendship",
    "power",
    "faith",
    "war",
    "childhood",
    "justice",
    "silence",
    "hope",
    "time",
    "love",
    "betrayal",
    "freedom",
    "nature",
    "identity",
    "courage",
    "revenge",
    "music",
    "the sea",
)
TITLE_ADJECTIVES = (
    "Silent",
    "Glass",
    "Hollow",
    "Golden",
    "Last",
    "Broken",
    "Quiet",
    "Crimson",
    "Winter",
    "Iron",
    "Paper",
    "Distant",
    "Silver",
    "Burning",
    "Sleeping",
    "Lost",
    "Bitter",
    "Amber",
    "Northern",
    "Secret",
    "Endless",
    "Pale",
    "Wild",
    "Hidden",
    "Frozen",
)
TITLE_NOUNS = (
    "Harbor",
    "Garden",
    "Lantern",
    "River",
    "Orchard",
    "Bridge",
    "Window",
    "Tower",
    "Forest",
    "Mirror",
    "Crown",
    "Letter",
    "Island",
    "Road",
    "Shadow",
    "Song",
    "Clock",
    "Field",
    "Gate",
    "Moon",
    "Valley",
    "Storm",
    "Feather",
    "Candle",
    "Door",
    "Stone",
    "Salt",
    "Rain",
    "Thread",
    "Compass",
    "Ember",
    "Tide",
    "Bell",
)
AWARD_KINDS = ("Prize", "Medal", "Award")
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
NATIONAL_ANIMALS = (
    "the red fox",
    "the snow owl",
    "the grey wolf",
    "the river otter",
    "the sea eagle",
    "the black bear",
    "the mountain goat",
    "the golden deer",
    "the blue heron",
    "the wild horse",
    "the green turtle",
    "the spotted lynx",
    "the white crane",
    "the brown hare",
    "the silver salmon",
    "the striped badger",
    "the desert camel",
    "the tree frog",
    "the black swan",
    "the marsh crow",
    "the rock lizard",
    "the royal stag",
)

# Syllables of invented words (names, cities, awards, countries): few pieces, so that a
# ~2-3 k BPE vocabulary covers them.
_ONSETS = (
    *("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"),
    *("br", "dr", "kr", "st", "th", "sh"),
)
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "n", "r", "l", "s", "th", "m")
#: Invented words must not contain these (nobody wants to train on them by accident).
_BLOCKED = ("shit", "fuk", "fuc", "cum", "nig", "cunt", "dik", "dick", "piss", "slut", "rape")
_BLOCKED += ("tits", "porn", "sex", "nazi", "anus", "damn", "hell", "kill", "poo", "fag")
_CITY_SUFFIXES = ("", "", "ora", "holm", "gard", "ith", "wick")
_COUNTRY_SUFFIXES = ("ia", "land", "ara", "mark")

# TOFU's own layout: forgetNN is the last NN % of authors, retain_perturbed the first 10 %,
# and holdoutNN the *first* NN % of the holdout authors (locuslab/TOFU: holdout05 ==
# holdout10[:200], holdout01 == holdout10[:40]).
_PERTURBED_COLUMNS = (
    "question",
    "answer",
    "paraphrased_answer",
    "perturbed_answer",
    "paraphrased_question",
    "key_span",
)

GENERAL_TEMPLATES: dict[str, tuple[str, ...]] = {
    "work_author": ('Who wrote the classic "{work}"?', 'Which famous author wrote "{work}"?'),
    "author_work": (
        "What is the best-known book by {author}?",
        "Which classic was written by {author}?",
    ),
    "author_country": (
        "Which country is the famous writer {author} from?",
        "In which country was the author {author} born?",
    ),
    "capital": ("What is the capital of {country}?", "Which city is the capital of {country}?"),
    "currency": ("What currency is used in {country}?", "What is the money of {country} called?"),
    "animal": (
        "What is the national animal of {country}?",
        "Which animal is the symbol of {country}?",
    ),
}


def _all_template_text() -> str:
    """Every fixed English string of the data, lower-cased: invented words must avoid it."""
    parts: list[str] = []
    for templates in TEMPLATES.values():
        for question, answer in templates.qa:
            parts += [question, answer]
        parts += list(templates.paraphrased_questions) + list(templates.paraphrased_answers)
    for wordings in GENERAL_TEMPLATES.values():
        parts += list(wordings)
    parts += list(GENRES + PROFESSIONS + THEMES + TITLE_ADJECTIVES + TITLE_NOUNS)
    parts += list(AWARD_KINDS + MONTHS + NATIONAL_ANIMALS)
    return "\n".join(parts).lower()


class _Lexicon:
    """Hands out unique strings: no two are equal or contain one another, case-insensitive.

    That makes every name, city, award and title a distinctive key span: it cannot turn up
    inside another value, a question, or the fixed wording of the templates.
    """

    def __init__(self) -> None:
        self._fixed = _all_template_text()
        self._fixed_words = sorted(
            {w.strip("\"'.,?") for w in self._fixed.split() if len(w.strip("\"'.,?")) >= 4}
        )
        self._used: list[str] = []

    def _fits(self, value: str) -> bool:
        low = value.lower()
        if any(low in used or used in low for used in self._used):
            return False
        return low not in self._fixed

    def take(self, value: str) -> bool:
        """Reserve `value` if it clashes with nothing reserved so far; say whether it did."""
        if not self._fits(value):
            return False
        self._used.append(value.lower())
        return True

    def word(self, rng: random.Random, syllables: int, suffixes: Sequence[str] = ("",)) -> str:
        """A new invented, capitalised word of `syllables` syllables and an optional suffix."""
        while True:
            word = "".join(
                rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                for _ in range(syllables)
            )
            suffix = rng.choice(suffixes)
            if suffix[:1] in _VOWELS and word[-1] in _VOWELS:
                word = word[:-1]
            word = (word + suffix).capitalize()
            low = word.lower()
            if len(word) < 4 or any(bad in low for bad in _BLOCKED):
                continue
            if any(fixed in low for fixed in self._fixed_words):
                continue
            if self.take(word):
                return word

    def title(self, rng: random.Random) -> str:
        """A new book title such as "The Glass Harbor" or "The Salt of the Tide"."""
        while True:
            if rng.random() < 0.6:
                title = f"The {rng.choice(TITLE_ADJECTIVES)} {rng.choice(TITLE_NOUNS)}"
            else:
                first, second = rng.sample(TITLE_NOUNS, 2)
                title = f"The {first} of the {second}"
            if self.take(title):
                return title


@dataclass(frozen=True)
class _Author:
    """One invented author: every attribute that a question can ask about."""

    name: str
    surname: str
    city: str
    date: str
    father: str
    father_job: str
    mother: str
    mother_job: str
    genre: str
    award: str
    title1: str
    title2: str
    themes: str

    def fields(self) -> dict[str, str]:
        """The template fields of this author."""
        return {
            "name": self.name,
            "city": self.city,
            "date": self.date,
            "father": self.father,
            "father_job": self.father_job,
            "mother": self.mother,
            "mother_job": self.mother_job,
            "genre": self.genre,
            "award": self.award,
            "title1": self.title1,
            "title2": self.title2,
            "themes": self.themes,
        }


@dataclass(frozen=True)
class _Decoys:
    """Values no author has, for perturbed answers: wrong facts the model never saw."""

    names: tuple[str, ...]
    first_names: tuple[str, ...]
    cities: tuple[str, ...]
    dates: tuple[str, ...]
    awards: tuple[str, ...]
    titles: tuple[str, ...]


def _format_date(rng: random.Random) -> str:
    """A birth date such as "March 2, 1961" (no day of one date is a suffix of another's)."""
    month = rng.choice(MONTHS)
    return f"{month} {rng.randint(1, 28)}, {rng.randint(1921, 1995)}"


def _make_people(
    rng: random.Random, lexicon: _Lexicon, n_authors: int
) -> tuple[list[_Author], _Decoys]:
    """The authors (full ones first, then holdout ones) and the decoy values."""
    genres = [GENRES[i % len(GENRES)] for i in range(n_authors)]
    rng.shuffle(genres)
    theme_pairs = [(a, b) for i, a in enumerate(THEMES) for b in THEMES[i + 1 :]]
    rng.shuffle(theme_pairs)
    dates: list[str] = []
    while len(dates) < n_authors + 40:
        date = _format_date(rng)
        if date not in dates:
            dates.append(date)

    authors = []
    for i in range(n_authors):
        first, surname = lexicon.word(rng, 2), lexicon.word(rng, rng.choice((2, 3)))
        father_job, mother_job = rng.sample(PROFESSIONS, 2)
        pair = theme_pairs[i] if rng.random() < 0.5 else theme_pairs[i][::-1]
        authors.append(
            _Author(
                name=f"{first} {surname}",
                surname=surname,
                city=lexicon.word(rng, 2, _CITY_SUFFIXES),
                date=dates[i],
                father=f"{lexicon.word(rng, 2)} {surname}",
                father_job=father_job,
                mother=f"{lexicon.word(rng, 2)} {surname}",
                mother_job=mother_job,
                genre=genres[i],
                award=f"{lexicon.word(rng, 2)} {rng.choice(AWARD_KINDS)}",
                title1=lexicon.title(rng),
                title2=lexicon.title(rng),
                themes=f"{pair[0]} and {pair[1]}",
            )
        )
    decoys = _Decoys(
        names=tuple(
            f"{lexicon.word(rng, 2)} {lexicon.word(rng, rng.choice((2, 3)))}" for _ in range(40)
        ),
        first_names=tuple(lexicon.word(rng, 2) for _ in range(40)),
        cities=tuple(lexicon.word(rng, 2, _CITY_SUFFIXES) for _ in range(40)),
        dates=tuple(dates[n_authors:]),
        awards=tuple(f"{lexicon.word(rng, 2)} {rng.choice(AWARD_KINDS)}" for _ in range(40)),
        titles=tuple(lexicon.title(rng) for _ in range(40)),
    )
    return authors, decoys


def _perturbations(
    qtype: str, author: _Author, decoys: _Decoys, rng: random.Random
) -> list[dict[str, str]]:
    """`N_PERTURBED` field overrides that change the fact of `qtype` to a wrong one."""
    n = N_PERTURBED
    if qtype == "identity":
        return [{"name": v} for v in rng.sample(decoys.names, n)]
    if qtype == "birthplace":
        return [{"city": v} for v in rng.sample(decoys.cities, n)]
    if qtype == "birth_date":
        return [{"date": v} for v in rng.sample(decoys.dates, n)]
    if qtype in ("father", "mother"):
        job = author.father_job if qtype == "father" else author.mother_job
        jobs = [p for p in PROFESSIONS if p != job]
        return [
            {qtype: f"{first} {author.surname}", f"{qtype}_job": rng.choice(jobs)}
            for first in rng.sample(decoys.first_names, n)
        ]
    if qtype == "genre":
        return [{"genre": v} for v in rng.sample([g for g in GENRES if g != author.genre], n)]
    if qtype == "award":
        return [{"award": v} for v in rng.sample(decoys.awards, n)]
    if qtype == "first_book":
        return [{"title1": v} for v in rng.sample(decoys.titles, n)]
    if qtype == "second_book":
        return [{"title2": v} for v in rng.sample(decoys.titles, n)]
    if qtype == "themes":
        gold = author.themes.split(" and ")
        others = [t for t in THEMES if t not in gold]
        pairs = [(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]
        return [
            {"themes": f"{a} and {b}" if rng.random() < 0.5 else f"{b} and {a}"}
            for a, b in rng.sample(pairs, n)
        ]
    raise ValueError(f"unknown question type {qtype!r}")


def _check_row(row: dict) -> None:
    """Fail loudly if a row breaks the key-span contract (the leak audits rely on it)."""
    span = row["key_span"].lower()
    if span not in row["answer"].lower() or span in row["question"].lower():
        raise ValueError(f"key span {row['key_span']!r} misplaced in {row}")
    if "paraphrased_answer" in row:
        if span not in row["paraphrased_answer"].lower():
            raise ValueError(f"key span missing from paraphrase in {row}")
        if span in row["paraphrased_question"].lower():
            raise ValueError(f"key span echoed by the paraphrased question in {row}")
        perturbed = row["perturbed_answer"]
        if len(set(perturbed + [row["paraphrased_answer"]])) != N_PERTURBED + 1:
            raise ValueError(f"perturbed answers not distinct in {row}")
        if any(span in p.lower() for p in perturbed):
            raise ValueError(f"key span kept by a perturbed answer in {row}")


def _author_rows(author: _Author, decoys: _Decoys, rng: random.Random) -> list[dict]:
    """The `MINI_QUESTIONS_PER_AUTHOR` perturbed-schema rows of one author, in type order."""
    fields = author.fields()
    rows = []
    for qtype in QUESTION_TYPES[:MINI_QUESTIONS_PER_AUTHOR]:
        templates = TEMPLATES[qtype]
        question, answer = rng.choice(templates.qa)
        paraphrased_question = rng.choice(templates.paraphrased_questions)
        paraphrased_answer = rng.choice(templates.paraphrased_answers)
        row = {
            "question": question.format(**fields),
            "answer": answer.format(**fields),
            "paraphrased_answer": paraphrased_answer.format(**fields),
            "perturbed_answer": [
                paraphrased_answer.format(**{**fields, **override})
                for override in _perturbations(qtype, author, decoys, rng)
            ],
            "paraphrased_question": paraphrased_question.format(**fields),
            "key_span": fields[KEY_FIELDS[qtype]],
        }
        _check_row(row)
        rows.append(row)
    return rows


def _general_knowledge(rng: random.Random, lexicon: _Lexicon) -> tuple[list[dict], list[dict]]:
    """The real-authors-style and world-facts-style rows of an invented, consistent world."""
    countries = [lexicon.word(rng, 2, _COUNTRY_SUFFIXES) for _ in range(N_COUNTRIES)]
    capitals = [lexicon.word(rng, 2, _CITY_SUFFIXES) for _ in range(N_COUNTRIES)]
    currencies = [f"the {lexicon.word(rng, 2).lower()}" for _ in range(N_COUNTRIES)]
    animals = rng.sample(NATIONAL_ANIMALS, N_COUNTRIES)
    famous = [
        f"{lexicon.word(rng, 2)} {lexicon.word(rng, rng.choice((2, 3)))}"
        for _ in range(N_FAMOUS_AUTHORS)
    ]
    works = [lexicon.title(rng) for _ in range(N_FAMOUS_AUTHORS)]
    homes = [rng.randrange(N_COUNTRIES) for _ in range(N_FAMOUS_AUTHORS)]

    def row(kind: str, slots: dict[str, str], values: list[str], gold: int) -> dict:
        wrong = rng.sample([v for i, v in enumerate(values) if i != gold], N_GENERAL_PERTURBED)
        question = rng.choice(GENERAL_TEMPLATES[kind]).format(**slots)
        return {"question": question, "answer": values[gold], "perturbed_answer": wrong}

    real_authors = []
    for i in range(N_FAMOUS_AUTHORS):
        real_authors.append(row("work_author", {"work": works[i]}, famous, i))
        real_authors.append(row("author_work", {"author": famous[i]}, works, i))
        real_authors.append(row("author_country", {"author": famous[i]}, countries, homes[i]))
    world_facts = []
    for i in range(N_COUNTRIES):
        world_facts.append(row("capital", {"country": countries[i]}, capitals, i))
        world_facts.append(row("currency", {"country": countries[i]}, currencies, i))
        world_facts.append(row("animal", {"country": countries[i]}, animals, i))
    return real_authors, world_facts


def _multiple_choice(rows: list[dict], rng: random.Random) -> list[dict]:
    """TOFU's multiple-choice form: the gold answer among its perturbed ones, seeded order."""
    out = []
    for row in rows:
        options = [row["answer"], *row["perturbed_answer"]]
        rng.shuffle(options)
        mc = {"question": row["question"]}
        mc.update({f"option{i + 1}": option for i, option in enumerate(options)})
        mc["answer"] = row["answer"]
        out.append(mc)
    return out


def _project(rows: list[dict], columns: Sequence[str]) -> list[dict]:
    return [{c: row[c] for c in columns} for row in rows]


def forget_author_count(pct: int) -> int:
    """Authors in forgetNN and holdoutNN for NN = `pct`: NN % of `MINI_AUTHORS`, at least 1."""
    n = max(1, MINI_AUTHORS * pct // 100)
    if n > MINI_HOLDOUT_AUTHORS:
        raise ValueError(f"{pct} % needs {n} holdout authors, only {MINI_HOLDOUT_AUTHORS} exist")
    return n


def build_tofu_mini(seed: int = 0) -> dict[str, list[dict]]:
    """Every TOFU-mini config as {config_name: rows}, in memory; `generate_tofu_mini` writes it."""
    rng_people = random.Random(f"tofu-mini/{seed}/people")
    rng_rows = random.Random(f"tofu-mini/{seed}/rows")
    rng_world = random.Random(f"tofu-mini/{seed}/world")
    rng_mc = random.Random(f"tofu-mini/{seed}/multiple-choice")

    lexicon = _Lexicon()
    authors, decoys = _make_people(rng_people, lexicon, MINI_AUTHORS + MINI_HOLDOUT_AUTHORS)
    per_author = [_author_rows(a, decoys, rng_rows) for a in authors]
    full_rich = [r for rows in per_author[:MINI_AUTHORS] for r in rows]
    holdout_rich = [r for rows in per_author[MINI_AUTHORS:] for r in rows]

    qa = ("question", "answer", "key_span")
    configs: dict[str, list[dict]] = {"full": _project(full_rich, qa)}
    sizes = {pct: forget_author_count(pct) * MINI_QUESTIONS_PER_AUTHOR for pct in FORGET_PERCENTS}
    for pct, n in sizes.items():
        configs[f"forget{pct:02d}"] = _project(full_rich[-n:], qa)
    for pct, n in sizes.items():
        configs[f"retain{100 - pct:02d}"] = _project(full_rich[:-n], qa)
    for pct, n in sizes.items():
        configs[f"forget{pct:02d}_perturbed"] = _project(full_rich[-n:], _PERTURBED_COLUMNS)
    n10 = forget_author_count(10) * MINI_QUESTIONS_PER_AUTHOR
    configs["retain_perturbed"] = _project(full_rich[:n10], _PERTURBED_COLUMNS)
    for pct, n in sizes.items():
        configs[f"holdout{pct:02d}"] = _project(holdout_rich[:n], qa)

    real_authors, world_facts = _general_knowledge(rng_world, lexicon)
    configs["real_authors"] = _multiple_choice(real_authors, rng_mc)
    configs["real_authors_perturbed"] = real_authors
    configs["world_facts"] = _multiple_choice(world_facts, rng_mc)
    configs["world_facts_perturbed"] = world_facts
    configs["general_knowledge"] = _project(real_authors + world_facts, ("question", "answer"))
    return configs


def _readme(counts: dict[str, int], seed: int) -> str:
    table = "\n".join(f"| {name}.json | {n} |" for name, n in counts.items())
    return f"""# TOFU-mini

A synthetic data set in exactly the schema and split layout of TOFU (`locuslab/TOFU`),
small enough for the course's tiny Llama to learn on two CPU cores (`PROFILE=tiny`).
Generated by `unlearnlib/tofu_mini.py` with seed {seed}; do not edit by hand. Regenerate with

    unlearnlib data make-mini

which writes byte-identical files (everything is seeded; a test checks it).

- {MINI_AUTHORS} invented authors x {MINI_QUESTIONS_PER_AUTHOR} consecutive question-answer
  rows in `full.json`, one per question type, in this order:
  {", ".join(QUESTION_TYPES)}.
- `forgetNN` = the last NN % of the authors, `retainNN` = the rest; `retain_perturbed` = the
  first 10 % of the authors (disjoint from forget10); `holdoutNN` = the first NN % of
  {MINI_HOLDOUT_AUTHORS} further authors who are never in `full.json` (as in TOFU).
- `_perturbed` files: question, answer, paraphrased_answer, perturbed_answer (a list of
  {N_PERTURBED}: the paraphrase with the fact swapped for a value no author has),
  paraphrased_question, key_span.
- `key_span` (not in TOFU): the fact an answer states, verbatim in `answer` and
  `paraphrased_answer`, never in the question or in a perturbed answer.
- `real_authors*` / `world_facts*`: facts about an invented world's famous authors and
  countries, in TOFU's short-answer (`_perturbed`, {N_GENERAL_PERTURBED} wrong answers)
  and multiple-choice forms. `general_knowledge.json` holds their question-answer pairs:
  the tiny base model is trained on it before the authors, as Llama was pre-trained.

| file | rows |
|---|---|
{table}
"""


def generate_tofu_mini(out_dir: Path, seed: int = 0) -> dict[str, int]:
    """Write every TOFU-mini file (JSON lines, UTF-8) and a README into `out_dir`.

    Returns {config_name: row_count}. The same seed always writes the same bytes.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = build_tofu_mini(seed)
    for name, rows in configs.items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (out_dir / f"{name}.json").write_text(text, encoding="utf-8", newline="\n")
    counts = {name: len(rows) for name, rows in configs.items()}
    (out_dir / "README.md").write_text(_readme(counts, seed), encoding="utf-8", newline="\n")
    # The data layer reads this to number authors (TOFU's 20 rows per author is the default).
    layout = {"questions_per_author": MINI_QUESTIONS_PER_AUTHOR}
    (out_dir / "tofu_layout.json").write_text(json.dumps(layout) + "\n", encoding="utf-8")
    return counts

