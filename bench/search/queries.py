"""The people-search mix: what users type, drawn from the people that were seeded.

Kinds, with their share of the mix:

- ``exact_name`` (20 %): someone's "First Last" as it is written;
- ``typo_name`` (20 %): the same with one letter of the longer word dropped,
  doubled, swapped with the next or replaced ("Jonh Smiht" style);
- ``first_name`` (15 %): a first name alone, drawn like the names were, so
  mostly common ones that thousands of people share;
- ``nickname_prefix`` (15 %): the first 3 to 6 letters of someone's nickname;
- ``interests`` (15 %): one to three catalogue interests, no name;
- ``interests_name`` (15 %): one or two interests and a first or full name.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass

from bench.search.people import PeopleGenerator, Person

KINDS: dict[str, int] = {
    "exact_name": 20,
    "typo_name": 20,
    "first_name": 15,
    "nickname_prefix": 15,
    "interests": 15,
    "interests_name": 15,
}


@dataclass(frozen=True, slots=True)
class Query:
    kind: str
    q: str
    interests: tuple[str, ...]

    def params(self) -> dict[str, str]:
        out = {}
        if self.q:
            out["q"] = self.q
        if self.interests:
            out["interests"] = ",".join(self.interests)
        return out


def typo(word: str, rng: random.Random) -> str:
    """One edit, never at the first letter (people rarely get that wrong)."""
    if len(word) < 3:
        return word
    i = rng.randrange(1, len(word) - 1)
    edit = rng.choice(["drop", "double", "swap", "replace"])
    if edit == "drop":
        return word[:i] + word[i + 1 :]
    if edit == "double":
        return word[:i] + word[i] + word[i:]
    if edit == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]


class QueryMix:
    def __init__(self, people: Sequence[Person], seed: int = 4) -> None:
        self.rng = random.Random(seed)
        self.people = people
        self.named = [p for p in people if p.nickname]
        # Draws first names and interests with the seeding's popularity.
        self.names = PeopleGenerator(seed)

    def _interests(self, most: int) -> tuple[str, ...]:
        picked: set[str] = set()
        want = self.rng.randint(1, most)
        while len(picked) < want:
            picked.add(self.names.interest())
        return tuple(sorted(picked))

    def query(self, kind: str) -> Query:
        person = self.rng.choice(self.people)
        full = f"{person.first_name} {person.last_name}"
        if kind == "exact_name":
            return Query(kind, full, ())
        if kind == "typo_name":
            first, last = person.first_name, person.last_name
            if len(last) >= len(first):
                last = typo(last, self.rng)
            else:
                first = typo(first, self.rng)
            return Query(kind, f"{first} {last}", ())
        if kind == "first_name":
            return Query(kind, self.names.first_name().capitalize(), ())
        if kind == "nickname_prefix":
            nickname = self.rng.choice(self.named).nickname
            return Query(kind, nickname[: self.rng.randint(3, 6)], ())
        if kind == "interests":
            return Query(kind, "", self._interests(3))
        if kind == "interests_name":
            name = full if self.rng.random() < 0.5 else self.names.first_name().capitalize()
            return Query(kind, name, self._interests(2))
        raise ValueError(kind)

    def draw(self, n: int) -> list[Query]:
        kinds = self.rng.choices(list(KINDS), list(KINDS.values()), k=n)
        return [self.query(k) for k in kinds]
