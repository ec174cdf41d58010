"""The one span matcher of the leak audit: is a key span in a text, and where?

Every comparison of a key span with text goes through one normalisation (`normalise`):
case folded, diacritics stripped (NFKD), possessives and apostrophes dropped, any run of
punctuation or space read as one word break, and spans matched as whole words only, so
"Park" is not found in "parking" but is in "Park's", and "Ben David" is in "Ben-David".

* `contains_span` and the recall rule `recalls` answer "is it there?";
* `span_locations` answers "where, in the raw text?" with the same rule, for the probes
  that cut a text at the span (`probes.cloze_prompt` blanks every occurrence,
  `probes.answer_prefix` stops at the first), so a blanked statement never contains
  the span and a prefix ends exactly where recall would find it.
"""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc`\u00b4]")
_POSSESSIVE_S = re.compile(r"['\u2018\u2019\u02bc`\u00b4]s\b")
_NON_WORD = re.compile(r"[\W_]+")
#: A letter or digit (a word character that is not "_", which `normalise` treats as a break).
_ALNUM = r"[^\W_]"
#: A span's leading punctuation, its words, its trailing punctuation.
_EDGES = re.compile(r"([\W_]*).*?([\W_]*)", re.DOTALL)


def _fold_letters(text: str) -> tuple[str, list[int]]:
    """Case folded, diacritics stripped; with the index in `text` each character came from.

    Character by character (NFKD, drop combining marks, casefold), which equals folding the
    whole string: NFKD composes nothing across characters, and the marks it could reorder
    are dropped.
    """
    if text.isascii():
        return text.lower(), list(range(len(text)))
    chars: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        for part in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(part):
                continue
            folded = part.casefold()
            chars.append(folded)
            origin.extend([index] * len(folded))
    return "".join(chars), origin


def normalise(text: str) -> str:
    """Lower case, diacritics stripped, possessives and apostrophes dropped, punctuation as spaces.

    "Park's" becomes "park" (so a prompt about "Ji-Yeon Park's parents" contains "Ji-Yeon
    Park"), "parents'" becomes "parents", "Ben-David" becomes "ben david", "Île" becomes
    "ile". Whitespace is collapsed and trimmed.
    """
    plain, _ = _fold_letters(text)
    plain = _APOSTROPHES.sub("", _POSSESSIVE_S.sub("", plain))
    return " ".join(_NON_WORD.sub(" ", plain).split())


def contains_span(text: str, span: str) -> bool:
    """Whether the normalised span occurs in the normalised text as whole words.

    An empty span (no key fact) is never contained.
    """
    needle = normalise(span)
    return bool(needle) and f" {needle} " in f" {normalise(text)} "


def recalls(generation: str, key_span: str, prompt: str) -> bool:
    """The recall rule: the key span is in the generation and nowhere in the prompt (no echo)."""
    return contains_span(generation, key_span) and not contains_span(prompt, key_span)


def span_locations(text: str, span: str) -> list[tuple[int, int]]:
    """(start, end) in `text` of every non-overlapping occurrence `contains_span` would find.

    The text is folded as `normalise` folds it, with each character's position kept, and the
    span's normalised words are searched as whole words with any punctuation or space
    between them. A match also covers the span's own leading and trailing punctuation where
    the text has it verbatim ("LGBTQ+", "(Harmony, #1)"), so blanking it leaves no hint; a
    possessive stays outside ("Park's" -> "Park" + "'s"). Empty for an empty span.
    """
    words = normalise(span).split()
    if not words:
        return []
    edges = _EDGES.fullmatch(span.strip())
    lead, trail = (edges.group(1), edges.group(2)) if edges else ("", "")
    plain, origin = _fold_letters(text)
    dropped = {i for m in _POSSESSIVE_S.finditer(plain) for i in range(m.start(), m.end())}
    dropped |= {m.start() for m in _APOSTROPHES.finditer(plain)}
    kept = [i for i in range(len(plain)) if i not in dropped]
    folded = "".join(plain[i] for i in kept)
    pattern = re.compile(rf"(?<!{_ALNUM})" + r"[\W_]+".join(map(re.escape, words))
                         + rf"(?!{_ALNUM})")
    found = []
    for match in pattern.finditer(folded):
        start, end = origin[kept[match.start()]], origin[kept[match.end() - 1]] + 1
        start -= len(lead) if lead and text[:start].endswith(lead) else 0
        end += len(trail) if trail and text.startswith(trail, end) else 0
        found.append((start, end))
    return found
