"""Generated people: names, nicknames, interests, visibility; deterministic by seed.

Names come from a few hundred first and last names drawn with Zipf weights
(exponent 0.5): the most common first name ("maria") is carried by 3.5 % of
people, the tenth by 1.1 %, the median one by 0.3 %, and last names alike; so
a first name alone matches thousands of people among 100,000, the case the
search's score tiers (storage/search/postgres.py, TIERS) exist for, and a
full name tens. Some names carry accents, which the index folds away.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from server.users.interests import CATALOGUE


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words("""
maria john james mohammed anna david michael wei sarah daniel laura carlos ana jose
elena ahmed emma luca sofia olivia noah liam ali fatima juan chen yuki hiroshi
paul peter thomas robert william richard joseph charles christopher matthew anthony
mark steven andrew joshua kevin brian george edward ronald timothy jason jeffrey
ryan jacob gary nicholas eric jonathan stephen larry justin scott brandon benjamin
samuel frank gregory raymond alexander patrick jack dennis jerry tyler aaron adam
henry nathan douglas zachary kyle walter ethan jeremy harold keith christian roger
mary patricia jennifer linda elizabeth barbara susan jessica karen nancy lisa betty
margaret sandra ashley kimberly emily donna michelle dorothy carol amanda melissa
deborah stephanie rebecca sharon cynthia kathleen amy angela shirley helen brenda
pamela nicole samantha katherine christine debra rachel carolyn janet catherine
giulia francesca marco alessandro lorenzo matteo chiara sara andrea federico
lucas mateo santiago valentina camila isabella gabriel diego martina lucia pablo
hugo lea manon chloe louis jules arthur camille ines theo nathalie pierre
lukas leon felix maximilian jonas paula mia hannah lena marie sophie johanna
ivan dmitri sergei olga natalia tatiana alexei mikhail irina svetlana pavel
priya rahul amit anjali arjun deepak sunita vikram pooja rohan neha
kenji sakura haruto yui sota hina ren aoi minjun seoyeon jiwoo hyun
omar layla youssef mariam hassan nour karim yasmin tariq amina ibrahim zainab
jose\u0301 zoe\u0308 rene\u0301e bjo\u0308rn franc\u0327ois
""")

LAST_NAMES = _words("""
garcia smith johnson williams brown jones miller davis rodriguez martinez hernandez
lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson
white harris sanchez clark ramirez lewis robinson walker young allen king wright
scott torres nguyen hill flores green adams nelson baker hall rivera campbell
mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards
collins reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan
cooper peterson bailey reed kelly howard ramos kim cox ward richardson watson
brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo
sanders patel myers long ross foster jimenez rossi russo ferrari esposito bianchi
romano colombo ricci marino greco bruno gallo conti costa giordano mancini
muller schmidt schneider fischer weber meyer wagner becker schulz hoffmann
koch richter klein wolf schroder neumann schwarz zimmermann braun kruger
dubois durand leroy moreau simon laurent lefebvre michel david bertrand roux
vincent fournier morel girard andre mercier dupont lambert bonnet francois
ivanov smirnov kuznetsov popov vasiliev petrov sokolov mikhailov novikov fedorov
wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo
sato suzuki takahashi tanaka watanabe ito yamamoto nakamura kobayashi kato
park choi jung kang cho yoon jang lim han shin
khan ahmed hussain ali shah malik sheikh iqbal rahman chowdhury
silva santos oliveira souza pereira lima carvalho ferreira almeida costa
o'brien o'connor mcdonald macleod fitzgerald
mu\u0308ller garci\u0301a lo\u0301pez jime\u0301nez pen\u0303a
""")

ADJECTIVES = _words("""
blue red green silver golden dark bright quiet wild lucky happy lazy crazy cosmic
little big swift sleepy brave clever shy fuzzy salty sunny stormy frozen hidden
""")
NOUNS = _words("""
fox wolf owl tiger panda falcon raven dragon ninja pirate wizard rider walker
runner dreamer hunter coder gamer surfer skater viking ghost phoenix comet
""")


@dataclass(frozen=True, slots=True)
class Person:
    first_name: str
    last_name: str
    nickname: str
    interests: tuple[str, ...]
    visibility: str  # "everyone" | "contacts"
    age: int | None
    gender: str


def _zipf_weights(n: int, s: float = 0.5) -> list[float]:
    return [1.0 / (rank + 1) ** s for rank in range(n)]


class PeopleGenerator:
    """Draws people; the same seed draws the same people."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self._first_w = _zipf_weights(len(FIRST_NAMES))
        self._last_w = _zipf_weights(len(LAST_NAMES))
        self.slugs = sorted(CATALOGUE)
        # Some interests are far more popular than others; the same ones for every seed.
        self._slug_order = random.Random(0).sample(self.slugs, len(self.slugs))
        self._slug_w = _zipf_weights(len(self.slugs), 0.7)

    def first_name(self) -> str:
        return self.rng.choices(FIRST_NAMES, self._first_w)[0]

    def last_name(self) -> str:
        return self.rng.choices(LAST_NAMES, self._last_w)[0]

    def interest(self) -> str:
        return self.rng.choices(self._slug_order, self._slug_w)[0]

    def interests(self) -> tuple[str, ...]:
        count = self.rng.choice([0, 0, 1, 2, 3, 3, 4, 5, 6, 8])
        picked = set(self.rng.choices(self._slug_order, self._slug_w, k=count))
        return tuple(sorted(picked))

    def nickname(self, first: str, last: str) -> str:
        roll = self.rng.random()
        if roll < 0.3:
            return ""
        if roll < 0.6:
            return self.rng.choice(ADJECTIVES) + self.rng.choice(NOUNS)
        if roll < 0.8:
            return f"{first}{self.rng.randrange(1, 100)}"
        return f"{first[0]}{last}".replace("'", "")

    def person(self) -> Person:
        first, last = self.first_name(), self.last_name()
        return Person(
            first_name=first.capitalize(),
            last_name=last.capitalize(),
            nickname=self.nickname(first, last),
            interests=self.interests(),
            visibility="contacts" if self.rng.random() < 0.1 else "everyone",
            age=self.rng.randrange(18, 75) if self.rng.random() < 0.7 else None,
            gender=self.rng.choice(["", "female", "male", "nonbinary"]),
        )

    def people(self, n: int) -> Iterator[Person]:
        for _ in range(n):
            yield self.person()
