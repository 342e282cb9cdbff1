"""The social side end to end on real nodes: contacts, status, profiles, search, chat requests.

Address books are matched at once and again by the indexer when someone signs
up later (``contact:joined``); status goes to mutual contacts only; people
search ranks by shared interests and fuzzy names and never shows hidden or
blocked people; message search covers only the searcher's plaintext
conversations. Tests that depend on the search backend run twice: on the
SQLite node (FTS5 trigrams rescored in Python) and on the PostgreSQL cluster
(pg_trgm). Every name a test searches for carries a random word of its own, so
tests sharing a node do not see each other's people.

The indexer follows the outbox within a fraction of a second; tests wait with
``wait_indexed`` where a write returns an event id and poll search otherwise.
Restarting the indexer and ``parley reindex`` are in test_reindex.py.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat

from client import ParleyApiError, ParleyClient
from server.users.interests import CATALOGUE
from tests.support.clients import signed_in_client
from tests.support.phones import fresh_phone
from tests.support.server import ServerProcess

T = TypeVar("T")

# How long a socket must stay silent for "no event" to count.
QUIET = 1.0
# Polls for what the indexer applies (it looks every 0.2 s; generous for a busy box).
PATIENCE = 10.0

STATUS_UPDATED = "status:updated"
CONTACT_JOINED = "contact:joined"
REQUEST_NEW = "chat_request:new"
REQUEST_UPDATED = "chat_request:updated"


# -- people ---------------------------------------------------------------------------


class Crowd:
    """Clients signed in by phone for one test (concurrently), closed after it."""

    def __init__(self) -> None:
        self.clients: list[ParleyClient] = []
        self.phones: dict[str, str] = {}  # user id -> E.164 number

    async def join(
        self,
        node: ServerProcess,
        *nicknames: str,
        phones: Iterable[str | None] | None = None,
        connect: bool = True,
    ) -> list[ParleyClient]:
        numbers = [p or fresh_phone() for p in (phones or [None] * len(nicknames))]
        assert len(numbers) == len(nicknames)
        results = await asyncio.gather(
            *(
                signed_in_client(node, name, phone=phone, connect=connect)
                for name, phone in zip(nicknames, numbers, strict=True)
            ),
            return_exceptions=True,
        )
        for result, phone in zip(results, numbers, strict=True):
            if isinstance(result, ParleyClient):
                self.clients.append(result)
                self.phones[uid(result)] = phone
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, ParleyClient)]

    def phone(self, client: ParleyClient) -> str:
        return self.phones[uid(client)]

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def crowd() -> AsyncIterator[Crowd]:
    people = Crowd()
    try:
        yield people
    finally:
        await people.close()


@pytest.fixture(params=["sqlite", "postgres"])
def node_pair(request: pytest.FixtureRequest) -> tuple[ServerProcess, ServerProcess]:
    """Two ways in: the SQLite node twice, or the two nodes of the PostgreSQL cluster."""
    if request.param == "sqlite":
        node: ServerProcess = request.getfixturevalue("sqlite_node")
        return node, node
    first, second = request.getfixturevalue("cluster")
    return first, second


def uid(client: ParleyClient) -> str:
    assert client.user_id is not None
    return client.user_id


def word(length: int = 9) -> str:
    """A random lower-case word: a surname no other test searches for."""
    return "".join(random.choices(string.ascii_lowercase, k=length))


# -- phone numbers --------------------------------------------------------------------

_landlines: set[str] = set()


def landline(region: str) -> str:
    """A valid fixed-line number in London (GB) or Berlin (DE), unused in this run.

    fresh_phone() hands out mobile numbers, so these never collide with its.
    """
    prefix, digits = {"GB": ("+44207", 7), "DE": ("+4930", 8)}[region]
    for _ in range(1000):
        candidate = prefix + "".join(random.choices(string.digits, k=digits))
        if candidate not in _landlines and phonenumbers.is_valid_number(
            phonenumbers.parse(candidate)
        ):
            _landlines.add(candidate)
            return candidate
    raise RuntimeError(f"no free {region} landline")


def written(e164: str, style: PhoneNumberFormat) -> str:
    """A number as an address book might hold it: "+44 20 7946 0123", "020 7946 0123"."""
    return phonenumbers.format_number(phonenumbers.parse(e164), style)


def dialled_from_europe(e164: str) -> str:
    """ "+44 20 7946 0123" as "0044 20 7946 0123" (00 is the international prefix there)."""
    return "00" + written(e164, PhoneNumberFormat.INTERNATIONAL)[1:]


def us_numbers(count: int) -> list[str]:
    """``count`` distinct valid New York numbers, written with spaces."""
    numbers = []
    exchange = 200
    while len(numbers) < count:
        for line in range(10_000):
            text = f"+1 212 {exchange} {line:04d}"
            if phonenumbers.is_valid_number(phonenumbers.parse(text)):
                numbers.append(text)
                if len(numbers) == count:
                    break
        exchange += 1
    return numbers


# -- waiting and failing ----------------------------------------------------------------


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    what: str,
    timeout: float = PATIENCE,
) -> T:
    """Poll ``probe`` until ``done`` says yes; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}; last: {value!r}")
        await asyncio.sleep(0.1)


async def refused(call: Awaitable[Any], status: int, code: str | None = None) -> ParleyApiError:
    """``call`` fails with ``status`` (and ``code``, when given)."""
    with pytest.raises(ParleyApiError) as info:
        await call
    error = info.value
    assert error.status == status, error
    if code is not None:
        assert error.code == code, error
    return error


async def raw(client: ParleyClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """An authenticated request whose response is returned as is."""
    headers = {
        "Authorization": f"Bearer {await client.fresh_access_token()}",
        **kwargs.pop("headers", {}),
    }
    return await client.http.request(method, path, headers=headers, **kwargs)


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    return response.status_code, str(body["error"]["code"])


async def assert_quiet(client: ParleyClient, name: str, seconds: float = QUIET) -> None:
    """No ``name`` event reaches the client's socket for ``seconds``."""
    await asyncio.sleep(seconds)
    seen = []
    while not client.events.empty():
        seen.append(client.events.get_nowait())
    assert [data for event, data in seen if event == name] == []


async def settled(client: ParleyClient) -> None:
    """Wait until the indexer has applied every write so far, sign-ups included.

    A new user's number reaches the phone directory through the indexer, so an
    address book uploaded a moment after the sign-up does not match it yet (the
    owner hears ``contact:joined`` instead). An empty profile edit is an event
    after all of them; once it is indexed, so are they.
    """
    change = await client.update_profile()
    await client.wait_indexed(change["event_id"], timeout=PATIENCE)


async def indexed(client: ParleyClient, change: dict[str, Any]) -> dict[str, Any]:
    """Wait until search reflects a profile change (its ``event_id``)."""
    await client.wait_indexed(change["event_id"], timeout=PATIENCE)
    return change


def found(page: dict[str, Any]) -> list[str]:
    return [p["user_id"] for p in page["people"]]


def texts(page: dict[str, Any]) -> list[str]:
    return [m["body"]["text"] for m in page["messages"]]


async def people_found(
    searcher: ParleyClient, q: str = "", interests: list[str] | None = None, **kw: Any
) -> list[str]:
    return found(await searcher.search_people(q, interests, limit=100, **kw))


async def messages_found(searcher: ParleyClient, q: str, **kw: Any) -> list[str]:
    page = await searcher.search_messages(q, limit=100, **kw)
    return [m["id"] for m in page["messages"]]


async def until_found(searcher: ParleyClient, q: str, message_id: str, **kw: Any) -> list[str]:
    """Poll message search until ``message_id`` is among the hits (the indexer caught up)."""
    return await eventually(
        lambda: messages_found(searcher, q, **kw),
        lambda ids: message_id in ids,
        f"message {message_id} found by {q!r}",
    )


# -- address books ------------------------------------------------------------------------


async def test_address_book_matches_numbers_written_any_way_in_any_country(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """US, UK and German numbers in several formats match their users; garbage is `invalid`."""
    us, uk, de = fresh_phone(), landline("GB"), landline("DE")
    owner, american, briton, german = await crowd.join(
        sqlite_node, "owner", "american", "briton", "german", phones=[None, us, uk, de]
    )
    await settled(owner)
    nobody_yet = fresh_phone()
    book = [
        f"  {written(us, PhoneNumberFormat.INTERNATIONAL)}  ",  # 0 "+1 201-555-0123", padded
        "hello",  # 1
        dialled_from_europe(uk),  # 2 "0044 20 7946 0123"
        written(uk, PhoneNumberFormat.NATIONAL),  # 3 "020 7946 0123" (region GB)
        written(de, PhoneNumberFormat.INTERNATIONAL),  # 4 "+49 30 12345678"
        "123",  # 5
        "+",  # 6
        "x" * 64,  # 7: as long as an entry may be
        us,  # 8 E.164
        dialled_from_europe(de),  # 9 "0049 30 12345678"
        "+44 (0)" + written(uk, PhoneNumberFormat.NATIONAL)[1:],  # 10 "+44 (0)20 7946 0123"
        nobody_yet,  # 11: a number, but nobody's
        "1" * 64,  # 12: too long to be a number
        crowd.phone(owner),  # 13: one's own number matches no one
        written(us, PhoneNumberFormat.RFC3966),  # 14 "tel:+1-201-555-0123"
    ]
    result = await owner.upload_contacts(book, region="GB")

    matches = {m["contact"]["user_id"]: m["indexes"] for m in result["matches"]}
    assert matches == {
        uid(american): [0, 8, 14],
        uid(briton): [2, 3, 10],
        uid(german): [4, 9],
    }
    cards = {m["contact"]["user_id"]: m["contact"] for m in result["matches"]}
    assert cards[uid(briton)]["nickname"] == "briton"
    assert "phones" not in cards[uid(briton)], "a card never shows numbers"
    assert result["invalid"] == [1, 5, 6, 7, 12]
    assert result["stored"] == 5  # us, uk, de, nobody_yet, own

    listed = await owner.contacts()
    assert {c["contact"]["user_id"]: c["mutual"] for c in listed} == {
        uid(american): False,
        uid(briton): False,
        uid(german): False,
    }

    # The region only reads numbers written without a country code: from the US,
    # "(201) 555-0123" is American and 011 dials abroad; a UK national number is not valid.
    from_us = [
        written(us, PhoneNumberFormat.NATIONAL),
        "011 " + written(uk, PhoneNumberFormat.INTERNATIONAL)[1:],
        written(uk, PhoneNumberFormat.NATIONAL),
    ]
    again = await owner.upload_contacts(from_us, region="US")
    assert {m["contact"]["user_id"]: m["indexes"] for m in again["matches"]} == {
        uid(american): [0],
        uid(briton): [1],
    }
    assert again["invalid"] == [2] and again["stored"] == 2
    # A replaced book forgets the German.
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {
        uid(american),
        uid(briton),
    }

    # Without a region, a number written without its country code is not a number.
    bare = await owner.upload_contacts([written(us, PhoneNumberFormat.NATIONAL)])
    assert (bare["matches"], bare["invalid"], bare["stored"]) == ([], [0], 0)
    assert await owner.contacts() == []


async def test_a_later_sign_up_produces_contact_joined_on_the_owners_socket(
    node_pair: tuple[ServerProcess, ServerProcess], crowd: Crowd
) -> None:
    """The owner (first node) hears `contact:joined` when their contact signs up (second node)."""
    first, second = node_pair
    (owner,) = await crowd.join(first, "owner")
    newcomer_phone = fresh_phone()
    before = await owner.upload_contacts(
        [written(newcomer_phone, PhoneNumberFormat.NATIONAL)], region="US"
    )
    assert (before["matches"], before["stored"]) == ([], 1)

    (newcomer,) = await crowd.join(second, "newcomer", phones=[newcomer_phone])
    joined = await owner.next_event(CONTACT_JOINED, timeout=PATIENCE)
    assert joined["contact"]["user_id"] == uid(newcomer)
    assert joined["contact"]["nickname"] == "newcomer"
    listed = await owner.contacts()
    assert [(c["contact"]["user_id"], c["mutual"]) for c in listed] == [(uid(newcomer), False)]

    await settled(newcomer)
    # Adding the owner back makes it mutual on both sides (no event: the owner was no newcomer).
    back = await newcomer.upload_contacts([crowd.phone(owner)])
    assert [m["contact"]["user_id"] for m in back["matches"]] == [uid(owner)]
    assert [c["mutual"] for c in await owner.contacts()] == [True]
    assert [c["mutual"] for c in await newcomer.contacts()] == [True]

    # Nobody else joined: the owner hears nothing more, the newcomer nothing at all.
    await assert_quiet(owner, CONTACT_JOINED, seconds=0.5)
    await assert_quiet(newcomer, CONTACT_JOINED, seconds=0)


async def test_patch_adds_and_removes_put_replaces_delete_forgets(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """PATCH add/remove (in any format), PUT replace and DELETE keep `contacts()` in step."""
    owner, pat, quinn, rory = await crowd.join(sqlite_node, "owner", "pat", "quinn", "rory")
    await settled(owner)

    first = await owner.upload_contacts([crowd.phone(pat)])
    assert [m["contact"]["user_id"] for m in first["matches"]] == [uid(pat)]

    added = await owner.change_contacts(
        add=["not a number", written(crowd.phone(quinn), PhoneNumberFormat.NATIONAL)],
        region="US",
    )
    # The answer lists the matches among the added numbers only.
    assert [(m["contact"]["user_id"], m["indexes"]) for m in added["matches"]] == [
        (uid(quinn), [1])
    ]
    assert (added["invalid"], added["stored"]) == ([0], 1)
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {uid(pat), uid(quinn)}

    # Removing pat's only number, written differently, drops pat; removing an
    # unknown number is harmless.
    removed = await owner.change_contacts(
        remove=[written(crowd.phone(pat), PhoneNumberFormat.NATIONAL), fresh_phone()],
        region="US",
    )
    assert removed["matches"] == []
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {uid(quinn)}

    # Adding a number already in the book again changes nothing.
    await owner.change_contacts(add=[crowd.phone(quinn)])
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {uid(quinn)}

    await owner.upload_contacts([crowd.phone(rory)])
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {uid(rory)}

    await owner.clear_contacts()
    assert await owner.contacts() == []
    # A PATCH after DELETE starts from an empty book.
    again = await owner.change_contacts(add=[crowd.phone(pat)])
    assert [m["contact"]["user_id"] for m in again["matches"]] == [uid(pat)]
    assert {c["contact"]["user_id"] for c in await owner.contacts()} == {uid(pat)}


async def link_phone(node: ServerProcess, client: ParleyClient, phone: str) -> dict[str, Any]:
    """Link another number to the client's account, proving it with the texted code."""
    start = await client.request("POST", "/v1/me/identities/phone/start", json={"phone": phone})
    code = await asyncio.to_thread(node.next_sms_code, start["phone"])
    linked: dict[str, Any] = await client.request(
        "POST",
        "/v1/me/identities/phone/verify",
        json={"request_id": start["request_id"], "code": code},
    )
    return linked


async def test_contact_joined_shows_the_card_as_its_owner_allows(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """Holding a number tells you its owner joined, with only the card they allow you."""
    owner, holder = await crowd.join(sqlite_node, "owner", "holder")
    await owner.update_profile(first_name="Hidden", age=30, visibility="nobody")
    hidden_number, open_number = fresh_phone(), fresh_phone()
    await holder.upload_contacts([hidden_number, open_number])
    await link_phone(sqlite_node, owner, hidden_number)
    joined = await holder.next_event(CONTACT_JOINED, timeout=PATIENCE)
    card = joined["contact"]
    assert card["user_id"] == uid(owner) and card["nickname"] == "owner"
    assert (card["first_name"], card["age"], card["limited"]) == ("", None, True)

    await owner.update_profile(visibility="everyone")
    await holder.clear_contacts()
    await holder.upload_contacts([open_number])
    await link_phone(sqlite_node, owner, open_number)
    card = (await holder.next_event(CONTACT_JOINED, timeout=PATIENCE))["contact"]
    assert (card["first_name"], card["age"], card["limited"]) == ("Hidden", 30, False)


async def test_linking_and_unlinking_a_number_updates_who_has_whom(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """A number linked later tells its holders `contact:joined`; unlinking drops the relation."""
    holder, old_friend, contact = await crowd.join(sqlite_node, "holder", "old-friend", "contact")
    await settled(holder)
    second_number = fresh_phone()
    await holder.upload_contacts([second_number])
    await old_friend.upload_contacts([crowd.phone(contact)])
    assert [c["contact"]["user_id"] for c in await old_friend.contacts()] == [uid(contact)]

    linked = await link_phone(sqlite_node, contact, second_number)
    assert linked["kind"] == "phone" and linked["verified"] is True
    joined = await holder.next_event(CONTACT_JOINED, timeout=PATIENCE)
    assert joined["contact"]["user_id"] == uid(contact)
    assert [c["contact"]["user_id"] for c in await holder.contacts()] == [uid(contact)]
    # The old friend already had the contact (by the first number): not told again.
    await assert_quiet(old_friend, CONTACT_JOINED, seconds=0.3)

    # The contact gives up the first number: the old friend, who only had that
    # one, loses them; the holder of the second keeps them.
    first_identity = next(
        i for i in await contact.identities() if i["id"] != linked["id"] and i["kind"] == "phone"
    )
    await contact.unlink_identity(first_identity["id"])
    await eventually(old_friend.contacts, lambda cs: cs == [], "the old friend's contact gone")
    assert [c["contact"]["user_id"] for c in await holder.contacts()] == [uid(contact)]


async def test_address_book_limits_and_malformed_bodies_are_clear_422s(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """5,001 numbers, a book pushed past 5,000, 65-character entries, non-lists: 422."""
    (owner,) = await crowd.join(sqlite_node, "owner", connect=False)
    numbers = us_numbers(5001)

    too_many = await raw(owner, "PUT", "/v1/contacts", json={"numbers": numbers})
    assert error_of(too_many) == (422, "invalid_request")
    assert "numbers" in too_many.json()["error"]["message"]
    too_many_added = await raw(owner, "PATCH", "/v1/contacts", json={"add": numbers})
    assert error_of(too_many_added) == (422, "invalid_request")

    full = await owner.upload_contacts(numbers[:5000])
    assert (full["stored"], full["invalid"]) == (5000, [])
    await refused(owner.change_contacts(add=[numbers[5000]]), 422, "too_many_contacts")
    # Re-adding a number the book holds, or swapping one for another, stays within the cap.
    same = await owner.change_contacts(add=[numbers[0]])
    assert same["stored"] == 1
    swapped = await owner.change_contacts(add=[numbers[5000]], remove=[numbers[1]])
    assert swapped["stored"] == 1
    await refused(owner.change_contacts(add=[numbers[1]]), 422, "too_many_contacts")

    bad_bodies: list[tuple[str, dict[str, Any]]] = [
        ("PUT", {"numbers": ["+" + "1" * 64]}),  # 65 characters
        ("PUT", {"numbers": [""]}),
        ("PUT", {"numbers": "+12125550100"}),  # not a list
        ("PUT", {"numbers": [12125550100]}),
        ("PUT", {"numbers": ["+12125550100"], "region": "USA"}),
        ("PUT", {"numbers": ["+12125550100"], "extra": True}),
        ("PUT", {}),
        ("PATCH", {"add": ["1" * 65]}),
        ("PATCH", {"remove": "+12125550100"}),
    ]
    for method, body in bad_bodies:
        response = await raw(owner, method, "/v1/contacts", json=body)
        assert error_of(response) == (422, "invalid_request"), (method, body, response.text)
    malformed = await raw(
        owner,
        "PUT",
        "/v1/contacts",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert error_of(malformed) == (400, "malformed_json")

    garbage = await owner.upload_contacts(["hello", "123", "+", "x" * 64, "++1 212", "555"])
    assert (garbage["matches"], garbage["stored"]) == ([], 0)
    assert garbage["invalid"] == [0, 1, 2, 3, 4, 5]

    beyond_bigint = {"since": 10**20}  # PostgreSQL's bigint would refuse it with a 500
    for bad in ({"since": -1}, {"limit": 0}, {"limit": 201}, {"since": "x"}, beyond_bigint):
        response = await raw(owner, "GET", "/v1/contacts/updates", params=bad)
        assert error_of(response) == (422, "invalid_request"), bad


# -- status -------------------------------------------------------------------------------


async def test_status_reaches_mutual_contacts_only_and_pages_as_updates(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """A and B have each other, C has A only: A's status goes to B, never to C."""
    alice, bob, carol = await crowd.join(sqlite_node, "alice", "bob", "carol")
    await settled(alice)
    await alice.upload_contacts([crowd.phone(bob)])
    await bob.upload_contacts([crowd.phone(alice)])
    await carol.upload_contacts([crowd.phone(alice)])
    assert [(c["contact"]["user_id"], c["mutual"]) for c in await carol.contacts()] == [
        (uid(alice), False)
    ]
    assert [(c["contact"]["user_id"], c["mutual"]) for c in await bob.contacts()] == [
        (uid(alice), True)
    ]

    party = await alice.set_status("party", "come over")
    assert (party["state"], party["text"], party["expires_at"]) == ("party", "come over", None)
    pushed = await bob.next_event(STATUS_UPDATED)
    assert (pushed["user_id"], pushed["state"], pushed["text"]) == (
        uid(alice),
        "party",
        "come over",
    )
    assert isinstance(pushed["change_id"], int)
    await assert_quiet(carol, STATUS_UPDATED)
    assert (await alice.profile())["status"]["state"] == "party"

    later = datetime.now(UTC) + timedelta(hours=2)
    await alice.set_status("busy")
    await alice.set_status("away", "lunch", expires_at=later)
    cleared = await alice.clear_status()
    assert (cleared["state"], cleared["text"], cleared["expires_at"]) == ("", "", None)
    events = [await bob.next_event(STATUS_UPDATED) for _ in range(3)]
    assert [(e["state"], e["text"]) for e in events] == [("busy", ""), ("away", "lunch"), ("", "")]
    assert abs(datetime.fromisoformat(events[1]["expires_at"]) - later) < timedelta(seconds=1)
    change_ids = [pushed["change_id"], *(e["change_id"] for e in events)]
    assert change_ids == sorted(change_ids) and len(set(change_ids)) == 4
    await assert_quiet(carol, STATUS_UPDATED, seconds=0.2)

    # What bob missed, two at a time, oldest first.
    first = await bob.contact_updates(0, limit=2)
    assert [u["state"] for u in first["updates"]] == ["party", "busy"]
    assert first["has_more"] is True
    assert first["next_since"] == first["updates"][-1]["id"] == change_ids[1]
    second = await bob.contact_updates(first["next_since"], limit=2)
    assert [(u["state"], u["text"]) for u in second["updates"]] == [("away", "lunch"), ("", "")]
    assert {u["user_id"] for u in second["updates"]} == {uid(alice)}
    assert second["has_more"] is False
    third = await bob.contact_updates(second["next_since"], limit=2)
    assert (third["updates"], third["next_since"], third["has_more"]) == (
        [],
        second["next_since"],
        False,
    )
    # Carol has alice's number, alice not hers: carol's feed is empty, as is alice's.
    assert (await carol.contact_updates())["updates"] == []
    assert (await alice.contact_updates())["updates"] == []

    # Out-of-range and malformed statuses are refused and change nothing.
    now = datetime.now(UTC)
    naive = now.replace(tzinfo=None) + timedelta(hours=1)
    for bad in (
        {"state": "party", "expires_at": (now - timedelta(minutes=1)).isoformat()},
        {"state": "party", "expires_at": (now + timedelta(days=7, minutes=5)).isoformat()},
        {"state": "party", "expires_at": naive.isoformat()},
        {"state": "party", "expires_at": "tomorrow"},
        {"state": "sleeping"},
        {"state": "party", "text": "x" * 141},
        {"state": "party", "text": "two\nlines"},
        {"state": "party", "mood": "great"},
    ):
        response = await raw(alice, "PUT", "/v1/me/status", json=bad)
        assert error_of(response) == (422, "invalid_request"), (bad, response.text)
    assert (await alice.profile())["status"]["state"] == ""
    await assert_quiet(bob, STATUS_UPDATED, seconds=0.2)

    # A status past its expires_at counts as cleared.
    brief = await alice.set_status(
        "party", "brief", expires_at=datetime.now(UTC) + timedelta(seconds=3)
    )
    assert brief["state"] == "party"
    await eventually(
        alice.profile, lambda p: p["status"]["state"] == "", "the status to lapse", timeout=10
    )

    # Once bob forgets alice's number they are not mutual: no more pushes, no feed.
    await bob.clear_contacts()
    while not bob.events.empty():
        bob.events.get_nowait()
    await alice.set_status("available")
    await assert_quiet(bob, STATUS_UPDATED, seconds=0.5)
    assert (await bob.contact_updates())["updates"] == []


# -- profiles -------------------------------------------------------------------------------


async def test_profile_edits_are_validated_and_cards_hide_from_blockers(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """PATCH /v1/me/profile checks every field; a card is 404 to someone its owner blocked."""
    me, other = await crowd.join(sqlite_node, "me", "other", connect=False)

    catalogue = await me.interests()
    assert {i["slug"]: i["label"] for i in catalogue} == CATALOGUE
    assert {"slug": "hiking", "label": "Hiking"} in catalogue

    for bad, code in (
        ({"interests": ["hiking", "underwater-basket-weaving"]}, "unknown_interest"),
        ({"interests": ["Hiking"]}, "invalid_request"),
        ({"interests": list(CATALOGUE)[:21]}, "invalid_request"),
        ({"age": 5}, "invalid_request"),
        ({"age": 121}, "invalid_request"),
        ({"visibility": "friends"}, "invalid_request"),
        ({"gender": "robot"}, "invalid_request"),
        ({"first_name": "a" * 101}, "invalid_request"),
        ({"last_name": "two\nlines"}, "invalid_request"),
        ({"phone": "+12125550100"}, "invalid_request"),
    ):
        await refused(me.update_profile(**bad), 422, code)
    untouched = await me.profile()
    assert (untouched["age"], untouched["interests"], untouched["visibility"]) == (
        None,
        [],
        "everyone",
    )

    changed = await me.update_profile(
        first_name="Ada",
        last_name="Lovelace",
        age=36,
        gender="female",
        interests=["science", "books", "science"],
        visibility="contacts",
    )
    assert isinstance(changed["event_id"], int)
    assert (changed["first_name"], changed["last_name"], changed["age"]) == ("Ada", "Lovelace", 36)
    assert changed["interests"] == ["books", "science"]
    assert changed["visibility"] == "contacts" and changed["nickname"] == "me"
    cleared = await me.update_profile(clear_age=True)
    assert cleared["age"] is None and cleared["interests"] == ["books", "science"]
    assert cleared["event_id"] > changed["event_id"]

    await me.update_profile(visibility="everyone")
    card = await other.profile_card(uid(me))
    assert card["user_id"] == uid(me) and card["limited"] is False
    assert (card["first_name"], card["last_name"], card["gender"]) == ("Ada", "Lovelace", "female")
    assert card["interests"] == ["books", "science"] and card["age"] is None
    assert "visibility" not in card and "status" not in card

    await me.block(uid(other))
    assert await me.blocks() == [uid(other)]
    await refused(other.profile_card(uid(me)), 404, "user_not_found")
    assert (await me.profile_card(uid(other)))["user_id"] == uid(other)  # one way
    await me.unblock(uid(other))
    assert await me.blocks() == []
    assert (await other.profile_card(uid(me)))["user_id"] == uid(me)

    await refused(other.profile_card("00000000-0000-4000-8000-000000000000"), 404)
    response = await raw(other, "GET", "/v1/users/not-a-uuid/profile")
    assert error_of(response) == (422, "invalid_request")
    await refused(me.block(uid(me)), 422)
    await refused(me.block("00000000-0000-4000-8000-000000000000"), 404)


async def test_cards_follow_visibility_unless_a_conversation_is_shared(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """A `contacts` or `nobody` profile shows its owner's names, age, gender and interests only
    to people who may find it in search or share a conversation; others get a limited card."""
    owner, stranger, friend, member = await crowd.join(
        sqlite_node, "owner", "stranger", "friend", "member", connect=False
    )
    await owner.update_profile(
        first_name="Grace", last_name="Hopper", age=40, gender="female", interests=["science"]
    )
    full = {"first_name": "Grace", "last_name": "Hopper", "age": 40, "gender": "female"}
    limited = {"first_name": "", "last_name": "", "age": None, "gender": ""}

    def details(card: dict[str, Any]) -> dict[str, Any]:
        return {k: card[k] for k in full}

    assert details(await stranger.profile_card(uid(owner))) == full  # everyone

    await owner.update_profile(visibility="contacts")
    await settled(owner)
    matched = await owner.upload_contacts([crowd.phone(friend)])
    assert [m["contact"]["user_id"] for m in matched["matches"]] == [uid(friend)]
    hidden = await stranger.profile_card(uid(owner))
    assert details(hidden) == limited and hidden["interests"] == [] and hidden["limited"] is True
    assert (hidden["nickname"], hidden["code"]) == ("owner", (await owner.profile())["code"])
    assert details(await friend.profile_card(uid(owner))) == full, "in the owner's book"
    assert details(await owner.profile_card(uid(owner))) == full, "one's own card"
    # Having someone's number finds them, but shows only what their visibility allows.
    for viewer, shown in ((stranger, limited), (friend, full)):
        [match] = (await viewer.upload_contacts([crowd.phone(owner)]))["matches"]
        assert details(match["contact"]) == shown, viewer.device_name
        [listed] = await viewer.contacts()
        assert details(listed["contact"]) == shown

    await owner.update_profile(visibility="nobody")
    assert details(await friend.profile_card(uid(owner))) == limited
    # A conversation opened at the owner, or a group they were put in, shows nothing more.
    await stranger.open_direct(uid(owner), mode="plaintext")
    await stranger.create_group("curious", member_ids=[uid(owner)], mode="plaintext")
    assert details(await stranger.profile_card(uid(owner))) == limited
    # Asking for a chat shows the asker whole to the one asked, not the other way round.
    asked = await stranger.request_chat(uid(owner), "hi")
    assert details(asked["recipient"]) == limited and asked["recipient"]["limited"] is True
    assert asked["sender"]["limited"] is False
    [outgoing] = await stranger.chat_requests("outgoing")
    assert details(outgoing["recipient"]) == limited
    [incoming] = await owner.chat_requests("incoming")
    assert incoming["sender"]["limited"] is False
    await owner.open_direct(uid(member), mode="plaintext")
    shown = await member.profile_card(uid(owner))
    assert details(shown) == full and shown["interests"] == ["science"], "a shared conversation"
    assert shown["limited"] is False
    # The rule is the card owner's visibility, not the viewer's: a hidden viewer still
    # sees a visible person whole.
    await stranger.update_profile(first_name="Open", age=25)
    seen = await owner.profile_card(uid(stranger))
    assert (seen["first_name"], seen["age"], seen["limited"]) == ("Open", 25, False)


# -- people search --------------------------------------------------------------------------


async def test_people_rank_by_shared_interests_then_name_similarity(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """More interests shared first; among equals, the closer name; none shared, last."""
    surname = word()
    searcher, *people = await crowd.join(
        sqlite_node, "searcher", "p1", "p2", "p3", "p4", "p5", connect=False
    )
    p1, p2, p3, p4, p5 = people
    wanted = ["jazz", "climbing", "philosophy"]
    # p4's surname has one letter doubled: a weaker match than p3's exact one.
    typo = surname[:4] + surname[4] + surname[4:]
    profiles = [
        (p1, "Dora", typo, ["jazz", "climbing", "philosophy", "cooking"]),
        (p2, "Eli", surname, ["jazz", "philosophy"]),
        (p3, "Fay", surname, ["climbing"]),
        (p4, "Gus", typo, ["jazz", "wine"]),
        (p5, "Hal", surname, ["cooking", "wine"]),
    ]
    changes = await asyncio.gather(
        *(
            p.update_profile(first_name=first, last_name=last, interests=interests)
            for p, first, last, interests in profiles
        )
    )
    for change in changes:
        await indexed(searcher, change)

    page = await searcher.search_people(surname, wanted, limit=100)
    mine = [p for p in page["people"] if p["user_id"] in {uid(p) for p in people}]
    assert [p["user_id"] for p in mine] == [uid(p1), uid(p2), uid(p3), uid(p4), uid(p5)]
    assert [p["shared_interests"] for p in mine] == [3, 2, 1, 1, 0]
    assert mine[0]["first_name"] == "Dora" and mine[0]["interests"] == sorted(profiles[0][3])

    # Interests alone: only people sharing one, most shared first.
    by_interest = await people_found(searcher, "", wanted)
    ranked = [u for u in by_interest if u in {uid(p) for p in people}]
    assert ranked[:2] == [uid(p1), uid(p2)]
    assert set(ranked[2:]) == {uid(p3), uid(p4)}
    # The name alone: exact surnames before the doubled letter, none shared.
    by_name = await searcher.search_people(surname, limit=100)
    mine = [p for p in by_name["people"] if p["user_id"] in {uid(p) for p in people}]
    assert {p["shared_interests"] for p in mine} == {0}
    assert {p["user_id"] for p in mine[:3]} == {uid(p2), uid(p3), uid(p5)}
    assert {p["user_id"] for p in mine[3:]} == {uid(p1), uid(p4)}


async def test_names_are_found_despite_typos(
    node_pair: tuple[ServerProcess, ServerProcess], crowd: Crowd
) -> None:
    """ "Jonh Smiht" finds John Smith; case, accents and a mangled nickname too."""
    first, second = node_pair
    nick = f"skipper{word(5)}"
    john, zed = await crowd.join(first, nick, "zed", connect=False)
    (searcher,) = await crowd.join(second, "searcher", connect=False)
    await indexed(john, await john.update_profile(first_name="John", last_name="Smith"))
    await indexed(zed, await zed.update_profile(first_name="Zed", last_name="Quux"))

    for query in ("Jonh Smiht", "john smith", "JOHN SMITH", "Jöhn Smíth", "Jonh", "Smiht"):
        hits = await people_found(searcher, query)
        assert uid(john) in hits, query
        assert uid(zed) not in hits, query
    # The nickname, with two letters swapped, also finds him.
    assert uid(john) in await people_found(searcher, nick[:2] + nick[3] + nick[2] + nick[4:])
    # A name with nothing in common finds nobody of these.
    assert not {uid(john), uid(zed)} & set(await people_found(searcher, "Wilhelmina"))

    # Other scripts and letters: Cyrillic, Japanese, Nordic.
    tag = word(5)
    dmitri, taro, zoe = await crowd.join(first, "d", "t", "z", connect=False)
    for client, given, family in (
        (dmitri, "Дмитрий", f"Иванов{tag}"),
        (taro, "山田", f"太郎{tag}"),
        (zoe, "Zoë", f"Ødegård{tag}"),
    ):
        await indexed(client, await client.update_profile(first_name=given, last_name=family))
    for query, wanted in (
        (f"Дмитри Иванов{tag}", dmitri),
        ("ДМИТРИЙ", dmitri),
        (f"山田 太郎{tag}", taro),
        ("山田", taro),
        (f"zoe Ødegard{tag}", zoe),
    ):
        assert uid(wanted) in await people_found(searcher, query), query


async def test_hidden_and_blocked_people_never_appear(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """`nobody` never, `contacts` only for numbers in their book, blocks both ways, not oneself."""
    surname = word()
    names = ["searcher", "open", "friend", "stranger", "hermit", "blocked", "blocker"]
    clients = await crowd.join(sqlite_node, *names, connect=False)
    searcher, open_, friend, stranger, hermit, blocked, blocker = clients
    visibility = ["everyone", "everyone", "contacts", "contacts", "nobody", "everyone", "everyone"]
    changes = await asyncio.gather(
        *(
            c.update_profile(
                first_name=name, last_name=surname, interests=["gardening"], visibility=seen
            )
            for c, name, seen in zip(clients, names, visibility, strict=True)
        )
    )
    for change in changes:
        await indexed(searcher, change)
    await friend.upload_contacts([crowd.phone(searcher)])  # friend knows the searcher
    await searcher.upload_contacts([crowd.phone(stranger)])  # only one way round
    await searcher.block(uid(blocked))
    await blocker.block(uid(searcher))

    everyone = {uid(c) for c in clients}

    async def seen_by(client: ParleyClient) -> set[str]:
        by_name = set(await people_found(client, surname)) & everyone
        by_interest = set(await people_found(client, "", ["gardening"])) & everyone
        by_both = set(await people_found(client, surname, ["gardening"])) & everyone
        assert by_name == by_interest == by_both
        return by_name

    assert await seen_by(searcher) == {uid(open_), uid(friend)}
    # The blocked and the blocker do not find the searcher either; the stranger
    # (whose own book is empty) finds neither contacts-only person.
    assert uid(searcher) not in await seen_by(blocked)
    assert uid(searcher) not in await seen_by(blocker)
    assert await seen_by(stranger) == {uid(searcher), uid(open_), uid(blocked), uid(blocker)}
    assert uid(hermit) not in await people_found(searcher, f"{names[4]} {surname}")

    # Changes: the hermit comes out, the open one hides, the friend forgets the
    # searcher, the searcher unblocks.
    await indexed(hermit, await hermit.update_profile(visibility="everyone"))
    await indexed(open_, await open_.update_profile(visibility="nobody"))
    await friend.clear_contacts()
    await searcher.unblock(uid(blocked))
    assert await seen_by(searcher) == {uid(hermit), uid(blocked)}
    assert uid(open_) not in await people_found(blocked, f"open {surname}")


async def test_people_search_pages_and_refuses_bad_input(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """limit/offset pages without repeats; a missing q, long q, bad slug or page: 422."""
    surname = word()
    searcher, *people = await crowd.join(
        sqlite_node, "searcher", "a", "b", "c", "d", "e", connect=False
    )
    changes = await asyncio.gather(
        *(p.update_profile(first_name=f"N{i}", last_name=surname) for i, p in enumerate(people))
    )
    for change in changes:
        await indexed(searcher, change)

    everything = await searcher.search_people(surname, limit=100)
    mine = [u for u in found(everything) if u in {uid(p) for p in people}]
    assert len(mine) == 5
    assert everything["next_offset"] is None
    pages, offset = [], 0
    while True:
        page = await searcher.search_people(surname, limit=2, offset=offset)
        pages.append(found(page))
        if page["next_offset"] is None:
            break
        assert page["next_offset"] == offset + 2 and len(found(page)) == 2
        offset = page["next_offset"]
    flat = [u for p in pages for u in p]
    assert flat == found(everything), "pages concatenate to the whole list, in order"
    last = await searcher.search_people(surname, limit=100, offset=1000)
    assert (last["people"], last["next_offset"]) == ([], None)

    # Neither a name nor interests, and none on the searcher's profile to match.
    for params in ({}, {"q": "   "}):
        response = await raw(searcher, "GET", "/v1/users/search", params=params)
        assert error_of(response) == (422, "no_search_terms"), (params, response.text)
    bad: list[dict[str, Any]] = [
        {"q": "x" * 201},
        {"q": surname, "limit": 0},
        {"q": surname, "limit": 101},
        {"q": surname, "offset": 1001},
        {"q": surname, "offset": -1},
        {"q": surname, "limit": "many"},
        {"interests": "x" * 700},
    ]
    for params in bad:
        response = await raw(searcher, "GET", "/v1/users/search", params=params)
        assert error_of(response) == (422, "invalid_request"), (params, response.text)
    for interests in ("gardening,not-a-thing", "Gardening", "<script>"):
        response = await raw(searcher, "GET", "/v1/users/search", params={"interests": interests})
        assert error_of(response) == (422, "unknown_interest"), (interests, response.text)
    assert (await searcher.search_people("x" * 200))["people"] == []  # 200 is fine, finds nobody
    assert (await searcher.search_people("!!! ???"))["people"] == []
    # Query syntax of the backends (FTS5, LIKE, SQL) is just text.
    for q in ("ab", "x"):  # one or two letters match everybody a little: refused
        response = await raw(searcher, "GET", "/v1/users/search", params={"q": q})
        assert error_of(response) == (422, "query_too_short"), (q, response.text)
    for q in ('" OR 1=1 --', "NEAR(a b)", "%_%", "***", "\x00\x00\x00", "😀😀😀"):
        assert not set(await people_found(searcher, q)) & {uid(p) for p in people}, q
    assert set(mine) <= set(await people_found(searcher, f"{surname} OR *"))


# -- message search -------------------------------------------------------------------------


async def test_message_search_covers_only_your_plaintext_conversations(
    node_pair: tuple[ServerProcess, ServerProcess], crowd: Crowd
) -> None:
    """Typos find your direct and group messages; other pairs' and encrypted ones never."""
    first, second = node_pair
    ann, ben = await crowd.join(first, "ann", "ben")
    (cal,) = await crowd.join(second, "cal")
    for client in (ann, ben, cal):
        await client.setup_device()
    direct = await ann.open_direct(uid(ben), mode="plaintext")
    group = await ann.create_group("crew", [uid(ben), uid(cal)], mode="plaintext")
    others = await ben.open_direct(uid(cal), mode="plaintext")  # ann is not in it
    secret = await ann.open_direct(uid(ben), mode="encrypted")

    sealed = await ann.send_encrypted(secret["id"], {"text": "budget figures sealed away"})
    in_direct = await ann.send_text(direct["id"], "the quarterly budget spreadsheet")
    in_group = await ben.send_text(group["id"], "budget meeting moved to friday")
    not_ann = await cal.send_text(others["id"], "budget secret for ben only")

    await until_found(cal, "budget", not_ann["id"])
    hits = await eventually(
        lambda: messages_found(ann, "budgte"),
        lambda ids: {in_direct["id"], in_group["id"]} <= set(ids),
        "ann's two budget messages",
    )
    assert not_ann["id"] not in hits and sealed["id"] not in hits
    assert set(hits) == {in_direct["id"], in_group["id"]}
    page = await ann.search_messages("spreadshet")
    assert [m["id"] for m in page["messages"]] == [in_direct["id"]]
    message = page["messages"][0]
    assert message["conversation_id"] == direct["id"]
    assert (message["sender_id"], message["body"]["text"]) == (uid(ann), in_direct["body"]["text"])

    # One conversation at a time; a conversation of others is not found at all.
    in_crew = await ann.search_messages("budget", conversation_id=group["id"])
    assert [m["id"] for m in in_crew["messages"]] == [in_group["id"]]
    await refused(
        ann.search_messages("budget", conversation_id=others["id"]), 404, "conversation_not_found"
    )
    # The encrypted conversation has nothing to find, not even its ciphertext.
    assert await messages_found(ben, "budget", conversation_id=secret["id"]) == []
    assert await messages_found(ben, "sealed") == []
    envelope = (await ben.history(secret["id"]))["messages"][-1]
    assert envelope["kind"] == "envelope"
    ciphertext = envelope["body"]["ciphertext"]
    assert await messages_found(ben, ciphertext[:24]) == []


async def test_edits_deletes_and_leaving_change_what_message_search_finds(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """An edit is found by its new text only; a delete disappears; a leaver loses the group."""
    ann, ben, cal = await crowd.join(sqlite_node, "ann", "ben", "cal")
    group = await ann.create_group("crew", [uid(ben), uid(cal)], mode="plaintext")
    sent = await ann.send_text(group["id"], "alpha pineapple tonight")
    await until_found(ben, "pineaple", sent["id"])

    await ann.edit_text(group["id"], sent["id"], "alpha mango tonight")
    await until_found(ben, "mangoo", sent["id"])
    assert await messages_found(ben, "pineapple") == []
    hit = (await ben.search_messages("mango"))["messages"][0]
    assert hit["id"] == sent["id"] and hit["body"]["text"] == "alpha mango tonight"
    assert hit["edited_at"] is not None

    await ann.delete_message(group["id"], sent["id"])
    await eventually(
        lambda: messages_found(ben, "mango"), lambda ids: ids == [], "the deleted message gone"
    )
    assert await messages_found(ann, "alpha") == []

    concert = await ben.send_text(group["id"], "xylophone concert on sunday")
    await until_found(cal, "xylophon", concert["id"])
    await cal.remove_member(group["id"], uid(cal))
    assert await messages_found(cal, "xylophone") == []
    await refused(
        cal.search_messages("xylophone", conversation_id=group["id"]),
        404,
        "conversation_not_found",
    )
    assert await messages_found(ben, "xylophone") == [concert["id"]]

    for q in ("   ", "ab"):  # trigram matching needs three characters
        response = await raw(ben, "GET", "/v1/search/messages", params={"q": q})
        assert error_of(response) == (422, "query_too_short"), (q, response.text)
    for params in (
        {"q": ""},
        {"q": "x" * 201},
        {"q": "x", "conversation_id": "nope"},
        {"q": "x", "limit": 101},
        {"q": "x", "offset": 1001},
        {},
    ):
        response = await raw(ben, "GET", "/v1/search/messages", params=params)
        assert error_of(response) == (422, "invalid_request"), (params, response.text)


# -- chat requests and blocks ------------------------------------------------------------------


async def test_chat_request_accepted_opens_the_conversation_for_both(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """new -> recipient; accept -> both get `updated` with the conversation; they can talk."""
    ann, ben, cal = await crowd.join(sqlite_node, "ann", "ben", "cal")
    sent = await ann.request_chat(uid(ben), "hi, we met at the climbing wall", mode="plaintext")
    assert (sent["state"], sent["mode"], sent["conversation_id"]) == ("pending", "plaintext", None)
    assert sent["sender"]["user_id"] == uid(ann) and sent["recipient"]["user_id"] == uid(ben)
    arrived = await ben.next_event(REQUEST_NEW)
    assert arrived["id"] == sent["id"] and arrived["text"] == "hi, we met at the climbing wall"
    assert arrived["sender"]["nickname"] == "ann"

    await refused(ann.request_chat(uid(ben), "again?"), 409, "request_pending")
    assert [r["id"] for r in await ben.chat_requests("incoming")] == [sent["id"]]
    assert [r["id"] for r in await ann.chat_requests("outgoing")] == [sent["id"]]
    assert await ann.chat_requests("incoming") == []
    assert await ben.chat_requests("incoming", "accepted") == []

    # Only the recipient may accept; to anyone else the request does not exist.
    await refused(cal.accept_chat_request(sent["id"]), 404, "chat_request_not_found")
    await refused(ann.accept_chat_request(sent["id"]), 404, "chat_request_not_found")
    await refused(ben.cancel_chat_request(sent["id"]), 404, "chat_request_not_found")

    accepted = await ben.accept_chat_request(sent["id"])
    assert accepted["state"] == "accepted" and accepted["conversation_id"]
    assert accepted["decided_at"] is not None
    for client in (ann, ben):
        told = await client.next_event(REQUEST_UPDATED)
        assert (told["id"], told["state"]) == (sent["id"], "accepted")
        assert told["conversation_id"] == accepted["conversation_id"]
    listed = {c["id"]: c for c in (await ann.conversations())["conversations"]}
    conversation = listed[accepted["conversation_id"]]
    assert (conversation["kind"], conversation["mode"]) == ("direct", "plaintext")
    assert {m["user_id"] for m in conversation["members"]} == {uid(ann), uid(ben)}

    hello = await ann.send_text(accepted["conversation_id"], "glad you said yes")
    reply = await ben.send_text(accepted["conversation_id"], "me too")
    assert (await text_from(ben, ann))["id"] == hello["id"]
    assert (await text_from(ann, ben))["id"] == reply["id"]

    await refused(ben.accept_chat_request(sent["id"]), 409, "request_closed")
    await refused(ben.decline_chat_request(sent["id"]), 409, "request_closed")
    await refused(ann.cancel_chat_request(sent["id"]), 409, "request_closed")
    assert [r["id"] for r in await ben.chat_requests("incoming", "accepted")] == [sent["id"]]
    assert await ben.chat_requests("incoming", "pending") == []

    # The default mode is encrypted.
    asked = await cal.request_chat(uid(ben))
    opened = await ben.accept_chat_request(asked["id"])
    listed = {c["id"]: c for c in (await cal.conversations())["conversations"]}
    assert listed[opened["conversation_id"]]["mode"] == "encrypted"


async def text_from(client: ParleyClient, sender: ParleyClient) -> dict[str, Any]:
    """The next text message from ``sender`` on the client's socket (others skipped)."""
    while True:
        message = await client.next_message(timeout=PATIENCE)
        if message["kind"] == "text" and message["sender_id"] == uid(sender):
            return message


async def test_chat_request_declined_cancelled_and_refused(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """Decline tells the sender, cancel tells the recipient; self, unknown, bad bodies refused."""
    ann, ben = await crowd.join(sqlite_node, "ann", "ben")
    first = await ann.request_chat(uid(ben), "coffee?")
    await ben.next_event(REQUEST_NEW)
    declined = await ben.decline_chat_request(first["id"])
    assert declined["state"] == "declined" and declined["conversation_id"] is None
    told = await ann.next_event(REQUEST_UPDATED)
    assert (told["id"], told["state"]) == (first["id"], "declined")
    await refused(ben.accept_chat_request(first["id"]), 409, "request_closed")

    second = await ann.request_chat(uid(ben), "tea, then?")  # nothing pending any more
    await ben.next_event(REQUEST_NEW)
    await refused(ben.cancel_chat_request(second["id"]), 404, "chat_request_not_found")
    cancelled = await ann.cancel_chat_request(second["id"])
    assert cancelled["state"] == "cancelled"
    told = await ben.next_event(REQUEST_UPDATED)
    assert (told["id"], told["state"]) == (second["id"], "cancelled")
    await refused(ben.accept_chat_request(second["id"]), 409, "request_closed")
    await refused(ann.cancel_chat_request(second["id"]), 409, "request_closed")

    assert [r["id"] for r in await ann.chat_requests("outgoing", None)] == [
        second["id"],
        first["id"],
    ]
    assert [r["id"] for r in await ben.chat_requests("incoming", "declined")] == [first["id"]]
    assert [r["id"] for r in await ben.chat_requests("incoming", "cancelled")] == [second["id"]]
    assert (await ann.conversations())["conversations"] == []

    await refused(ann.request_chat(uid(ann)), 422)
    await refused(ann.request_chat("00000000-0000-4000-8000-000000000000"), 404, "user_not_found")
    await refused(ann.request_chat(uid(ben), "x" * 501), 422)
    await refused(ann.request_chat(uid(ben), mode="carrier-pigeon"), 422)
    await refused(ann.accept_chat_request("00000000-0000-4000-8000-000000000000"), 404)
    response = await raw(ann, "POST", "/v1/chat-requests/not-an-id/accept")
    assert error_of(response) == (422, "invalid_request")
    response = await raw(ann, "GET", "/v1/chat-requests", params={"box": "sideways"})
    assert error_of(response) == (422, "invalid_request")


async def test_blocking_stops_requests_and_direct_messages_across_nodes(
    cluster: tuple[ServerProcess, ServerProcess], crowd: Crowd
) -> None:
    """B (node 2) blocks A (node 1): A's requests, messages and new chats are 403; unblock."""
    node1, node2 = cluster
    (ann,) = await crowd.join(node1, "ann")
    (ben,) = await crowd.join(node2, "ben")
    direct = await ann.open_direct(uid(ben), mode="plaintext")
    await ann.send_text(direct["id"], "before the block")
    await text_from(ben, ann)
    waiting = await ann.request_chat(uid(ben), "and an encrypted one?")
    await ben.next_event(REQUEST_NEW)

    await ben.block(uid(ann))
    await ben.block(uid(ann))  # twice is once
    assert await ben.blocks() == [uid(ann)]
    # The request sent before the block is out of ben's sight.
    assert await ben.chat_requests("incoming") == []
    await refused(ann.request_chat(uid(ben), "please", mode="plaintext"), 403, "blocked")
    with pytest.raises(ParleyApiError) as info:
        await ann.send_text(direct["id"], "are you there?")
    assert info.value.code == "blocked"
    await refused(ann.open_direct(uid(ben), mode="encrypted"), 403, "blocked")
    await refused(ann.open_direct(uid(ben), mode="plaintext"), 403, "blocked")
    # One way: ben may still write, and may not send a request while blocking.
    await ben.send_text(direct["id"], "I can still talk")
    assert (await text_from(ann, ben))["body"]["text"] == "I can still talk"
    await refused(ben.request_chat(uid(ann)), 403, "blocked")

    await ben.unblock(uid(ann))
    assert await ben.blocks() == []
    again = await ann.send_text(direct["id"], "back again")
    assert (await text_from(ben, ann))["id"] == again["id"]
    assert [r["id"] for r in await ben.chat_requests("incoming")] == [waiting["id"]]
    await refused(ann.request_chat(uid(ben)), 409, "request_pending")
    assert (await ann.open_direct(uid(ben), mode="plaintext"))["id"] == direct["id"]


# -- the event log ------------------------------------------------------------------------------


async def test_event_ids_report_when_search_has_a_write(
    sqlite_node: ServerProcess, crowd: Crowd
) -> None:
    """A profile edit's event id becomes indexed; unknown ids are 404, impossible ones 422."""
    (me,) = await crowd.join(sqlite_node, "me", connect=False)
    surname = word()
    change = await me.update_profile(first_name="Evie", last_name=surname)
    await me.wait_indexed(change["event_id"], timeout=PATIENCE)
    status = await me.event_status(change["event_id"])
    assert status["id"] == change["event_id"] and status["indexed"] is True
    assert status["position"] >= change["event_id"]
    # Indexed means searchable.
    (other,) = await crowd.join(sqlite_node, "other", connect=False)
    assert uid(me) in await people_found(other, f"Evie {surname}")

    later = await me.update_profile(nickname="evie")
    assert later["event_id"] > change["event_id"]
    await me.wait_indexed(later["event_id"], timeout=PATIENCE)

    await refused(me.event_status(2**62), 404, "event_not_found")
    for bad in ("0", "-1", str(2**62 + 1), "abc"):
        response = await raw(me, "GET", f"/v1/events/{bad}")
        assert error_of(response) == (422, "invalid_request"), bad
    anonymous = await me.http.get(f"/v1/events/{change['event_id']}")
    assert anonymous.status_code == 401
