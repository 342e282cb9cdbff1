"""Address-book matching and profile cards on SQLite and PostgreSQL (each has its own SQL).

PostgreSQL writes, matches and relates a book in one statement, SQLite
through the ORM; both must leave the same rows and give the same answers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tortoise import connections

from config.errors import InvalidRequestError
from config.settings import DatabaseSettings
from server.contacts.cards import profile_cards
from server.contacts.numbers import POOL_FROM, NumberNormalizer, normalize
from server.contacts.service import MAX_CONTACTS, ContactService, phone_hash
from server.users.profiles import cards
from storage.models import Contact, PhoneDirectory, Profile, User, UserContact

SECRET = b"s" * 32
ROOT = Path(__file__).resolve().parents[2]


class Silent:
    """An emitter that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, list[str]]] = []

    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None:
        self.sent.append((event, data, user_ids))


def uk(n: int) -> str:
    """A valid British mobile number, distinct for each n."""
    return f"+44 7911 1{n:05d}"


def e164(n: int) -> str:
    return f"+4479111{n:05d}"


async def user(name: str, phone: int | None = None, **profile: Any) -> str:
    created = await User.create(code=uuid.uuid4().hex[:16], nickname=name, first_name=name)
    if profile:
        await Profile.create(user=created, **profile)
    if phone is not None:
        await PhoneDirectory.create(phone_hash=phone_hash(SECRET, e164(phone)), user=created)
    return str(created.id)


@pytest.fixture
async def service(db: DatabaseSettings) -> Any:
    conn = connections.get("default")
    for table in ("user_contacts", "contacts", "phone_directory", "profiles", "blocks"):
        await conn.execute_script(f'DELETE FROM "{table}"')
    contacts = ContactService(SECRET, Silent())
    try:
        yield contacts
    finally:
        contacts.close()


def matched(result: Any) -> dict[str, list[int]]:
    matches, _ = result
    return {card.user_id: indexes for card, indexes in matches}


async def relation(owner: str) -> set[str]:
    return {
        str(u)
        for u in await UserContact.filter(owner_id=owner).values_list("contact_id", flat=True)
    }


async def book(owner: str) -> set[str]:
    return {
        str(h) for h in await Contact.filter(owner_id=owner).values_list("phone_hash", flat=True)
    }


async def test_replace_stores_matches_and_relates_the_whole_book(service: ContactService) -> None:
    """PUT: every valid number stored once, matches with their positions, the relation agrees."""
    owner = await user("owner", phone=1)
    ann = await user("ann", phone=2, age=30, gender="female", interests=["jazz", "hiking"])
    bob = await user("bob", phone=3)
    cy = await user("cy", phone=4)  # not in the first book
    numbers = [uk(2), "garbage", e164(3), uk(9), "07911 100002", uk(1), "123"]

    result = await service.replace(owner, numbers, "GB")
    assert matched(result) == {ann: [0, 4], bob: [2]}
    cards_by_id = {card.user_id: card for card, _ in result[0]}
    assert cards_by_id[ann].model_dump() == (await cards([ann]))[0].model_dump()
    assert cards_by_id[bob].interests == [] and cards_by_id[bob].age is None
    assert [card.user_id for card, _ in result[0]] == [ann, bob], "first listed first"
    assert result[1].invalid == [1, 6] and len(result[1].hashes) == 4
    assert await book(owner) == set(result[1].hashes)
    assert await relation(owner) == {ann, bob}

    # A new book forgets what the old one held, in the rows and in the relation.
    again = await service.replace(owner, [uk(3), uk(4)], "GB")
    assert matched(again) == {bob: [0], cy: [1]}
    assert await relation(owner) == set(matched(again))
    assert await book(owner) == {phone_hash(SECRET, e164(3)), phone_hash(SECRET, e164(4))}

    empty = await service.replace(owner, [], None)
    assert matched(empty) == {} and await book(owner) == set() and await relation(owner) == set()


async def test_patch_adds_removes_and_refuses_more_than_the_limit(service: ContactService) -> None:
    """PATCH: matches of the added numbers only; removing drops the relation; 5,000 at most."""
    owner = await user("owner")
    ann, bob = await user("ann", phone=2), await user("bob", phone=3)
    await service.replace(owner, [uk(2)], "GB")

    added = await service.patch(owner, ["07911 100003", "nope", uk(2)], [], "GB")
    assert matched(added) == {bob: [0], ann: [2]}
    assert added[1].invalid == [1]
    assert await relation(owner) == {ann, bob}

    removed = await service.patch(owner, [], [uk(2), uk(7)], "GB")
    assert matched(removed) == {}
    assert await relation(owner) == {bob}
    assert await book(owner) == {phone_hash(SECRET, e164(3))}

    many = [uk(100 + i) for i in range(MAX_CONTACTS)]
    with pytest.raises(InvalidRequestError) as refused:
        await service.patch(owner, many, [], "GB")
    assert refused.value.code == "too_many_contacts"
    assert await book(owner) == {phone_hash(SECRET, e164(3))}, "nothing half-written"
    # Removing one makes room for exactly 5,000.
    fits = await service.patch(owner, many, [uk(3)], "GB")
    assert matched(fits) == {} and len(await book(owner)) == MAX_CONTACTS
    assert await relation(owner) == set()

    await service.clear(owner)
    assert await book(owner) == set() and await relation(owner) == set()


async def test_matched_lists_contacts_with_mutual_flags(service: ContactService) -> None:
    """GET /contacts: the owner's contacts who use Parley, mutual when they hold the owner too."""
    owner = await user("owner", phone=1)
    ann, bob = await user("ann", phone=2), await user("bob", phone=3)
    await service.replace(owner, [uk(2), uk(3)], "GB")
    await service.replace(ann, [uk(1)], "GB")
    assert {(c.user_id, mutual) for c, mutual in await service.matched(owner)} == {
        (ann, True),
        (bob, False),
    }


async def test_profile_cards_equal_the_orm_cards(service: ContactService) -> None:
    """One join gives the cards the ORM gives, in the order asked, unknown ids left out."""
    with_profile = await user("ann", age=41, gender="other", interests=["chess", "jazz"])
    bare = await user("bob")
    empty_profile = await user("cy", age=None)
    avatar = uuid.uuid4()
    await User.filter(id=bare).update(avatar_media_id=avatar, last_name="Brown")
    ids = [bare, str(uuid.uuid4()), with_profile, empty_profile, bare]
    got = [c.model_dump() for c in await profile_cards(ids)]
    assert got == [c.model_dump() for c in await cards(ids)]
    assert [c["user_id"] for c in got] == [bare, with_profile, empty_profile]
    assert got[0]["avatar_media_id"] == str(avatar)
    assert await profile_cards([]) == []


async def test_big_books_parse_in_processes_exactly_as_in_one() -> None:
    """A book split over processes gives the hashes, positions and invalid entries of one pass."""
    numbers = [uk(i % 700) if i % 9 else f"bad {i}" for i in range(POOL_FROM + 801)]
    numbers[5] = "07911 100003"  # the same number as uk(3), written nationally
    normalizer = NumberNormalizer(SECRET, processes=2)
    try:
        # The first big book is parsed in a thread while the workers start.
        first = await normalizer.run(numbers, "GB")
        await normalizer.warm()
        assert normalizer.ready
        split = await normalizer.run(numbers, "GB")
    finally:
        normalizer.close()
    whole = normalize(SECRET, numbers, "GB")
    for got in (first, split):
        assert got.hashes == whole.hashes
        assert list(got.hashes) == list(whole.hashes), "same first-seen order"
        assert got.invalid == whole.invalid and len(whole.invalid) > 100


_OWNER = """
import asyncio, pathlib, sys
from server.contacts.numbers import NumberNormalizer

async def main():
    normalizer = NumberNormalizer(b"s" * 32, processes=2)
    await normalizer.warm()
    pids = " ".join(str(p) for p in normalizer._pool._processes)
    done = pathlib.Path(sys.argv[1])
    done.with_suffix(".tmp").write_text(pids)
    done.with_suffix(".tmp").rename(done)
    await asyncio.sleep(60)

if __name__ == "__main__":
    asyncio.run(main())
"""


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie may wait long to be reaped here)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_workers_exit_when_their_process_is_killed(tmp_path: Path) -> None:
    """A node killed outright (no shutdown) leaves no worker processes behind."""
    script, pids = tmp_path / "owner.py", tmp_path / "pids"
    script.write_text(_OWNER)
    # No pipes: a leftover worker would hold them open and hang the wait below.
    owner = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(pids), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL
    )
    for _ in range(600):
        if pids.exists() or owner.returncode is not None:
            break
        await asyncio.sleep(0.1)
    workers = [int(p) for p in pids.read_text().split()]
    assert len(workers) == 2 and all(running(p) for p in workers)
    owner.kill()
    await owner.wait()
    try:
        deadline = time.monotonic() + 10
        for _ in range(100):
            if not any(running(p) for p in workers) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert not any(running(p) for p in workers), "workers outlived their owner"
    finally:
        for pid in filter(running, workers):
            os.kill(pid, signal.SIGKILL)
