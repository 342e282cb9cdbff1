"""Text normalization and pg_trgm's trigram similarity, in pure Python.

PostgreSQL computes ``word_similarity`` natively; the SQLite and OpenSearch
backends rescore their candidates with this port so that all three agree on
what "similar" means. It follows contrib/pg_trgm/trgm_op.c (PostgreSQL 15-18):
``generate_trgm_only`` (each word lower-cased and padded with two blanks in
front and one behind, every run of three characters a trigram) and
``calc_word_similarity``/``iterate_word_similarity`` (the greedy search for the
extent of the haystack most similar to the needle), including its float
behaviour where it matters (only strict improvements move the extent).

Everything here takes *normalized* text (see ``normalize``): words of
letters and digits separated by single spaces. pg_trgm's own word splitting
then sees the same words, so the Python and SQL scores agree.
"""

from __future__ import annotations

import re
import unicodedata

# Letters and digits, Unicode-aware; underscore is a separator as in pg_trgm.
_WORD = re.compile(r"[^\W_]+")


def normalize(text: str) -> str:
    """Lower-case, strip accents, keep letters and digits, one space between words.

    "Émile  O'Brien-Smith" -> "emile o brien smith".
    """
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(text.casefold()))


def padded(normalized: str) -> str:
    """Every word as pg_trgm pads it ("  word "), so plain 3-grams of the result
    include every pg_trgm trigram of the text (plus junk ones ending in two blanks
    or made of blanks, which no query ever asks for)."""
    if not normalized:
        return ""
    return "  " + "   ".join(normalized.split(" ")) + " "


def trigram_list(normalized: str) -> list[str]:
    """pg_trgm's trigrams of each word, in order, repeats kept."""
    out: list[str] = []
    for word in normalized.split():
        p = f"  {word} "
        out.extend(p[i : i + 3] for i in range(len(p) - 2))
    return out


def trigrams(normalized: str) -> frozenset[str]:
    """The set pg_trgm's ``show_trgm`` would show (multibyte ones unhashed)."""
    return frozenset(trigram_list(normalized))


def word_similarity(needle: str, haystack: str) -> float:
    """pg_trgm ``word_similarity(needle, haystack)`` of two normalized texts."""
    return word_similarity_of(trigrams(needle), trigram_list(haystack))


def word_similarity_of(needle: frozenset[str], haystack: list[str]) -> float:
    """``word_similarity`` from the needle's trigram set and the haystack's trigram list."""
    ulen1 = len(needle)
    if ulen1 == 0 or not haystack:
        return 0.0
    ids: dict[str, int] = {}
    positions = [ids.setdefault(t, len(ids)) for t in haystack]
    found = [False] * len(ids)
    for t, j in ids.items():
        found[j] = t in needle
    if not any(found):
        return 0.0
    return _iterate(positions, found, ulen1)


def _sml(count: int, len1: int, len2: int) -> float:
    return count / (len1 + len2 - count)


def _iterate(positions: list[int], found: list[bool], ulen1: int) -> float:
    # A line-by-line port of iterate_word_similarity() without the strict and
    # check-only flags: pg_trgm keeps the first extent on ties, so do we.
    lastpos = [-1] * len(found)
    ulen2 = count = 0
    lower = -1
    best = 0.0
    for i, trg in enumerate(positions):
        if lower >= 0 or found[trg]:
            if lastpos[trg] < 0:
                ulen2 += 1
                if found[trg]:
                    count += 1
            lastpos[trg] = i
        if not found[trg]:
            continue
        upper = i
        if lower == -1:
            lower = i
            ulen2 = 1
        current = _sml(count, ulen1, ulen2)
        tmp_count, tmp_ulen2, prev_lower = count, ulen2, lower
        for tmp_lower in range(lower, upper + 1):
            candidate = _sml(tmp_count, ulen1, tmp_ulen2)
            if candidate > current:
                current, ulen2, lower, count = candidate, tmp_ulen2, tmp_lower, tmp_count
            tmp_trg = positions[tmp_lower]
            if lastpos[tmp_trg] == tmp_lower:
                tmp_ulen2 -= 1
                if found[tmp_trg]:
                    tmp_count -= 1
        best = max(best, current)
        for tmp_lower in range(prev_lower, lower):
            tmp_trg = positions[tmp_lower]
            if lastpos[tmp_trg] == tmp_lower:
                lastpos[tmp_trg] = -1
    return best
