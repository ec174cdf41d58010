"""Key spans: the one distinctive fact of a forget answer that a leak probe looks for.

A key span is a short piece of the gold answer that is NOT in the question (a name, title,
place, date, number, profession ...), so that a generation containing it recalled the fact
rather than echoed the prompt. TOFU-mini stores it by construction (`key_span` column).
For real TOFU, `key_span` picks it heuristically, in this order:

1. a preferred kind from the question's wording: "when / what year / how old ..." asks for a
   date or number, "full name / who is the author ..." asks for a name;
2. otherwise the first quoted title ("..." or '...'), then the first capitalised name
   (multi-word spans such as "Korean Art Critic's Choice Award", professions written with a
   capital such as "Bartender"), then a date, then a number;
3. otherwise (answers that only describe, e.g. "her father worked as a civil engineer") a
   noun-phrase-like stretch of content words not in the question: roles ("as a ...",
   "was a ...") first, then the stretch with the rarest word (highest inverse document
   frequency over the data set, see `inverse_document_frequency`).

Measured on the real forget10 split (400 rows): every row gets a span; on two hand-checked
samples of 25 rows each (tests/test_key_spans.py) 22 + 22 of 50 are right. Every miss is a
descriptive answer without a name, title, date or number ("within the confines of ...").

One span per fact, by design: recall then means one thing ("the model said the fact"), the
chance that an unrelated generation matches does not grow with the length of a list of
alternatives, and audited and retain models are held to the same string. `candidate_spans`
lists the alternatives, ranked, for inspection.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping

from unlearnlib.audit.matching import contains_span, normalise


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Function words, pronouns, auxiliaries and sentence adverbs: never part of a descriptive span.
STOPWORDS = _wordset("""
a about above after again against all also although am among an and any apart are as at be
because been before being below between both but by can could did do does doing during each
either even ever every few for from further had has have having he her here hers herself him
himself his how however i if in indeed into is it its itself just least less many may me
might more most much must my myself neither no nor not now of off often on once one only onto
or other others our ours out over own per quite rather same several she should since so some
such than that the their theirs them themselves then there these they this those through
throughout thus to too under until up upon us very was we were what when where whether which
while who whom whose why will with within without would yes yet you your yours absolutely
certainly additionally furthermore moreover besides like well otherwise
""")
#: Words (and the list comma) after which a noun phrase, not a verb, follows.
NOUN_PHRASE_OPENERS = _wordset("""
a an the of as in with from into by for his her their its our my this these those about like
including include includes than between among and or is are was were be been become
became becomes ,
""")
_ROLE_VERBS = _wordset("as is are was were be been being become became becomes")
#: Endings of nouns and adjectives: a stretch that starts with one is no verb phrase.
_NOUN_OR_ADJECTIVE = re.compile(r"(?:al|ic|ous|ive|ful|less|ness|tion|sion|ment|ity|ism|ist|er"
                                r"|or|ure|ance|ence|ship|hood|ary|ery|ian|ese|ish)s?$")

_MONTH = (r"(?:January|February|March|April|May|June|July|August|September|October|November"
          r"|December)")
_DATE = re.compile("|".join((
    rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}\b",          # March 19, 1960
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}\b",  # 15th of April, 1992
    r"\b\d{1,2}/\d{1,2}/\d{2,4}\b",                                      # 05/25/1930
    rf"\b{_MONTH}\s+\d{{4}}\b",                                           # March 1960
)))
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*s?\b")
# A quote opens after a non-word character and closes before one, so the apostrophes of
# "Montenegro's" or "parents'" neither open nor (usually) close a title.
_QUOTED = re.compile(r"\"([^\"]+)\"|\u201c([^\u201d]+)\u201d"
                     r"|(?<!\w)['\u2018\u2019](.+?)['\u2018\u2019](?!\w)")
_CAP_WORD = r"(?:(?:Dr|Mr|Mrs|Ms|Prof|St)\.\s+)?[A-Z](?:[\w'\u2019\-/+&]|\.(?=\w))*"
_CONNECTOR = r"(?:of|the|for|in|de|la|du|da|del|von|van|al|to)"
_CAPITALISED = re.compile(rf"{_CAP_WORD}(?:\s+(?:{_CONNECTOR}\s+)*{_CAP_WORD})*")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\W*$")
_WORD = re.compile(r"[A-Za-z][\w'\u2019\-]*")
_TOKEN = re.compile(r"[A-Za-z][\w'\u2019\-]*|[^\w\s]")
_POSSESSIVE = re.compile(r"(?:['\u2019]s|(?<=s)['\u2019])$")
_MASK = "\x00"

_DATE_CUE = re.compile(r"\b(?:when|what year|which year|what date|birth ?date|date of birth"
                       r"|birthday|how old|what age|at what age|how long|how often|how many)\b")
_NAME_CUE = re.compile(r"\bfull name\b|\bwho is (?:the|this)\b|\bname of (?:the|this)\b.*\bauthor")


def key_span(question: str, answer: str, idf: Mapping[str, float] | None = None) -> str:
    """The answer's most distinctive span that is not in the question ("" when none is).

    `idf` (word -> inverse document frequency, from `inverse_document_frequency`) ranks the
    descriptive fallback spans; without it every content word weighs the same and the first
    new stretch of content words wins.
    """
    candidates = candidate_spans(question, answer, idf)
    return candidates[0] if candidates else ""


def candidate_spans(question: str, answer: str,
                    idf: Mapping[str, float] | None = None) -> list[str]:
    """Every candidate key span of an answer, best first (see the module docstring)."""
    kinds, rest = _entity_spans(answer)
    order = ["title", "name", "date", "number"]
    q = question.lower()
    if _DATE_CUE.search(q):
        order = ["date", "number", "title", "name"]
    elif _NAME_CUE.search(q):
        order = ["name", "title", "date", "number"]
    ranked = [span for kind in order for span in kinds[kind]] + _descriptive_spans(
        question, rest, idf)
    out: list[str] = []
    for span in ranked:
        new = not contains_span(question, span) and contains_span(answer, span)
        if new and normalise(span) not in {normalise(s) for s in out}:
            out.append(span)
    return out


def key_spans_for(dataset: Iterable[Mapping[str, str]]) -> list[str]:
    """One key span per row: the `key_span` column when present (TOFU-mini), else `key_span`.

    `dataset` is a `datasets.Dataset` or any rows with question and answer. The heuristic's
    word rarities come from the rows' own questions and answers.
    """
    rows = list(dataset)
    if rows and "key_span" in rows[0]:
        return [row["key_span"] for row in rows]
    idf = inverse_document_frequency(r["question"] + " " + r["answer"] for r in rows)
    return [key_span(r["question"], r["answer"], idf) for r in rows]


def inverse_document_frequency(texts: Iterable[str]) -> dict[str, float]:
    """idf(w) = log(N / df(w)) over normalised words, df = the number of texts containing w."""
    counts: Counter[str] = Counter()
    n = 0
    for text in texts:
        counts.update(set(normalise(text).split()))
        n += 1
    return {word: math.log(n / df) for word, df in counts.items()}


def _entity_spans(answer: str) -> tuple[dict[str, list[str]], str]:
    """Quoted titles, dates, numbers and capitalised names, each in order of appearance.

    Also returns the answer with titles, dates and numbers blanked out, for the descriptive
    spans (and so that "June" in a date or "The" in a title is never taken for a name).
    """
    titles = [_clean(next(g for g in m.groups() if g is not None))
              for m in _QUOTED.finditer(answer)]
    rest = _QUOTED.sub(_MASK, answer)
    dates = [m.group() for m in _DATE.finditer(rest)]
    rest = _DATE.sub(_MASK, rest)
    numbers = [m.group() for m in _NUMBER.finditer(rest)]
    rest = _NUMBER.sub(_MASK, rest)
    names = [n for m in _CAPITALISED.finditer(rest) if (n := _name(rest, m, answer))]
    kinds = {"title": [t for t in titles if _looks_like_title(t)], "date": dates,
             "number": numbers, "name": names}
    return kinds, rest


def _name(text: str, match: re.Match[str], answer: str) -> str:
    """A capitalised run minus a sentence-initial common word and a trailing possessive.

    "Winning the Historical Fiction Award" -> "Historical Fiction Award"; a capitalised word
    at a sentence start ("Growing", "Indeed", "Readers of ...") counts only when a capitalised
    word follows it directly ("Carmen Montenegro") or the answer capitalises it mid-sentence.
    """
    words = match.group().split()
    if _SENTENCE_START.search(text[: match.start()]):
        first = words[0].lower()
        common = first in STOPWORDS or first.endswith(("ing", "ed", "ly"))
        in_name = len(words) > 1 and not re.fullmatch(_CONNECTOR, words[1])
        elsewhere = re.search(rf"\w\s+{re.escape(words[0])}\b", answer)
        if common or not (in_name or elsewhere):
            words = words[1:]
            while words and re.fullmatch(_CONNECTOR, words[0]):
                words = words[1:]
    while words and re.fullmatch(_CONNECTOR, words[-1]):
        words = words[:-1]
    return _POSSESSIVE.sub("", _clean(" ".join(words)))


def _descriptive_spans(question: str, masked_answer: str,
                       idf: Mapping[str, float] | None) -> list[str]:
    """Noun-phrase-like stretches of content words not in the question, best first.

    A stretch is adjacent content words: stopwords, question words, punctuation, adverbs
    (-ly) and verb forms (-ed, or -ing at its start; not hyphenated words like "self-guided")
    end it. TOFU's facts are objects ("from a humanitarian perspective", "themes of identity,
    sexuality"), so a stretch should follow a determiner, a preposition, a copula or a list
    comma; otherwise its first word is taken for a verb ("often constructs his ...", "to
    articulate complex concepts") and dropped, unless it ends like a noun or adjective
    ("otherwise societal taboos"). Roles ("worked as a civil engineer", "was a florist") rank
    first, since an author's profile is mostly such attributes; then the rarest word decides.
    """
    found = _content_stretches(question, masked_answer)
    # A word the idf has never seen is as rare as the rarest; without idf all weigh 1.
    unseen = max(idf.values(), default=1.0) if idf else 1.0

    def rarity(span: str) -> float:
        return max(idf.get(w, unseen) if idf else 1.0 for w in normalise(span).split())

    found.sort(key=lambda f: (f[0], rarity(f[1])), reverse=True)  # stable: ties keep order
    return [span for _, span in found]


def _content_stretches(question: str, masked_answer: str) -> list[tuple[bool, str]]:
    """The stretches of `_descriptive_spans` in order, each with whether it names a role."""
    asked = set(normalise(question).split())
    found: list[tuple[bool, str]] = []
    stretch: list[str] = []
    history: list[str] = ["", ""]
    context = ("", "")

    def close() -> None:
        introduced = context[1] in NOUN_PHRASE_OPENERS or (
            bool(stretch) and _NOUN_OR_ADJECTIVE.search(stretch[0].lower()) is not None)
        words = stretch if introduced else stretch[1:]
        if words:
            found.append((context[1] in ("a", "an") and context[0] in _ROLE_VERBS,
                          " ".join(words)))
        stretch.clear()

    for token in _TOKEN.findall(masked_answer):
        bare = _POSSESSIVE.sub("", token)
        low = normalise(bare)
        # "-ing" opens a verb phrase ("adding ...") but ends a noun ("analytical thinking").
        verbish = "-" not in bare and len(low) > 4 and (
            low.endswith(("ly", "ed")) or (low.endswith("ing") and not stretch))
        if not _WORD.fullmatch(token) or not low or low in STOPWORDS or verbish or (
                set(low.split()) & asked):
            close()
        else:
            if not stretch:
                context = (history[-2], history[-1])
            stretch.append(bare)
        history.append(low or token)
    close()
    return found


def _clean(span: str) -> str:
    return span.strip().strip(".,;:!?").strip()


def _looks_like_title(span: str) -> bool:
    return bool(re.search(r"[A-Z0-9]", span)) and len(span.split()) <= 20
