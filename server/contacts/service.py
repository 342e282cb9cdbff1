"""Address books and who is whose contact (seed 002).

A client uploads the numbers in its address book; each is normalized to
E.164 and kept only as HMAC-SHA256(server secret, number). Verified phone
numbers of users are kept the same way in ``phone_directory``, so matching an
address book is one indexed join, and ``user_contacts`` (owner has a number of
contact) is the relation everything else uses: status goes to *mutual*
contacts, "contacts" visibility in search means "people who have my number".

The relation changes from both sides: an upload or edit of an address book
(here, at once, so the answer lists the matches), and a user gaining or losing
a verified number (``sync_phones``, run by the indexer from the outbox), which
tells every owner of that number that the contact joined.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from tortoise.transactions import in_transaction

from config.errors import InvalidRequestError
from realtime.events import CONTACT_JOINED, Emitter
from server.contacts.cards import CARD_COLUMNS, card_from_row, profile_cards
from server.contacts.numbers import Normalized, NumberNormalizer, phone_hash
from server.users.profiles import as_seen_by, card_of, limited, seen_whole_by
from server.users.schemas import ProfileCard
from storage import sql
from storage.models import Block, Contact, Identity, PhoneDirectory, UserContact

__all__ = ["MAX_CONTACTS", "ContactService", "Normalized", "phone_hash"]

log = logging.getLogger(__name__)

MAX_CONTACTS = 5000

Matches = list[tuple[ProfileCard, list[int]]]

# PostgreSQL: an address book is written, matched and related in one
# statement (bench/search measured 0.6 s for the five ORM steps, 0.2 s for
# this). $1 the owner, $2 the book's hashes. The book is joined to the
# directory (5,000 index probes); "phone_hash = ANY($2)" would make the
# planner read the whole directory, and "<> ALL($2)" compare every row with
# every element: NOT IN over a sub-select is hashed once.
_RELATE = """
unrelated AS (
    DELETE FROM user_contacts
    WHERE owner_id = $1::uuid AND contact_id NOT IN (SELECT user_id FROM matched)
), related AS (
    INSERT INTO user_contacts (id, owner_id, contact_id, created_at)
    SELECT gen_random_uuid(), $1::uuid, m.user_id, now()
    FROM (SELECT DISTINCT user_id FROM matched) AS m
    ON CONFLICT (owner_id, contact_id) DO NOTHING
)"""

_MATCHES = f"""{CARD_COLUMNS}, m.phone_hash
FROM matched AS m
JOIN users AS u ON u.id = m.user_id
LEFT JOIN profiles AS p ON p.user_id = u.id"""

_REPLACE = f"""
WITH book AS (
    SELECT h AS phone_hash FROM unnest($2::text[]) AS h
), gone AS (
    DELETE FROM contacts
    WHERE owner_id = $1::uuid AND phone_hash NOT IN (SELECT phone_hash FROM book)
), added AS (
    INSERT INTO contacts (id, owner_id, phone_hash, created_at)
    SELECT gen_random_uuid(), $1::uuid, phone_hash, now() FROM book
    ON CONFLICT (owner_id, phone_hash) DO NOTHING
), matched AS (
    SELECT d.phone_hash, d.user_id
    FROM book JOIN phone_directory AS d ON d.phone_hash = book.phone_hash
    WHERE d.user_id <> $1::uuid
), {_RELATE}
{_MATCHES}
"""  # noqa: S608 (constant text)

# PATCH: the relation follows the whole book as stored; the answer lists the
# matches among $2, the added hashes.
_REMATCH = f"""
WITH matched AS (
    SELECT c.phone_hash, d.user_id
    FROM contacts AS c JOIN phone_directory AS d ON d.phone_hash = c.phone_hash
    WHERE c.owner_id = $1::uuid AND d.user_id <> $1::uuid
), {_RELATE}
{_MATCHES}
WHERE m.phone_hash IN (SELECT unnest($2::text[]))
"""  # noqa: S608 (constant text)

_REMOVE = """
DELETE FROM contacts WHERE owner_id = $1::uuid AND phone_hash IN (SELECT unnest($2::text[]))
"""

# How many numbers the book would hold with $2 added.
_COUNT_WITH = """
SELECT count(*) + cardinality($2::text[]) AS total FROM contacts
WHERE owner_id = $1::uuid AND phone_hash NOT IN (SELECT unnest($2::text[]))
"""

_ADD = """
INSERT INTO contacts (id, owner_id, phone_hash, created_at)
SELECT gen_random_uuid(), $1::uuid, h, now() FROM unnest($2::text[]) AS h
ON CONFLICT (owner_id, phone_hash) DO NOTHING
"""


def _too_many() -> InvalidRequestError:
    return InvalidRequestError(
        f"add: the address book would hold more than {MAX_CONTACTS} numbers",
        code="too_many_contacts",
    )


def _matches(rows: list[dict[str, Any]], found: Normalized) -> Matches:
    """Cards of the matched users with the positions of their numbers, first-listed first."""
    cards: dict[str, ProfileCard] = {}
    indexes: dict[str, list[int]] = {}
    for row in rows:
        user = row["user_id"]
        if user not in cards:
            cards[user] = card_from_row(row)
        indexes.setdefault(user, []).extend(found.hashes[row["phone_hash"]])
    ordered = sorted((sorted(i), u) for u, i in indexes.items())
    return [(cards[u], i) for i, u in ordered]


async def _as_seen_by(owner_id: str, matches: Matches) -> Matches:
    """Matches with their cards as each person allows the owner of the book to see them:
    holding a number finds someone, it does not open their profile."""
    cards = await as_seen_by(owner_id, [card for card, _ in matches])
    return [(card, indexes) for card, (_, indexes) in zip(cards, matches, strict=True)]


class ContactService:
    def __init__(self, secret: bytes, emitter: Emitter) -> None:
        self._secret = secret
        self._emitter = emitter
        self._numbers = NumberNormalizer(secret)

    def close(self) -> None:
        """Stop the worker processes that parse big address books, if any started."""
        self._numbers.close()

    async def warm_up(self) -> None:
        """Start those worker processes now rather than with the first big book."""
        await self._numbers.warm()

    # -- address books ----------------------------------------------------------

    def normalize(self, numbers: Sequence[str], region: str | None) -> Normalized:
        """Keyed hashes of the valid numbers; indexes of the ones that are not numbers."""
        return self._numbers(numbers, region)

    async def parse(self, numbers: Sequence[str], region: str | None) -> Normalized:
        """``normalize`` off the event loop (big books in worker processes)."""
        return await self._numbers.run(numbers, region)

    async def replace(
        self, owner_id: str, numbers: Sequence[str], region: str | None
    ) -> tuple[Matches, Normalized]:
        """The whole address book: what was there before is forgotten."""
        found = await self.parse(numbers, region)
        return await _as_seen_by(owner_id, await self.store_book(owner_id, found)), found

    async def store_book(self, owner_id: str, found: Normalized) -> Matches:
        """Make the stored book (and the relation) exactly ``found``; its matches."""
        conn = sql.connection()
        if sql.is_postgres(conn):
            rows = await conn.execute_query_dict(_REPLACE, [owner_id, list(found.hashes)])
            return _matches(rows, found)
        async with in_transaction():
            await Contact.filter(owner_id=owner_id).delete()
            await self._store(owner_id, found.hashes)
        return await self._rematch(owner_id, found)

    async def patch(
        self, owner_id: str, add: Sequence[str], remove: Sequence[str], region: str | None
    ) -> tuple[Matches, Normalized]:
        """Add and remove entries; matches are those of the added ones."""
        found = await self.parse(add, region)
        gone = await self.parse(remove, region)
        return await _as_seen_by(owner_id, await self._patch(owner_id, found, gone)), found

    async def _patch(self, owner_id: str, found: Normalized, gone: Normalized) -> Matches:
        if sql.is_postgres():
            return await self._patch_postgres(owner_id, found, gone)
        async with in_transaction():
            if gone.hashes:
                await Contact.filter(owner_id=owner_id, phone_hash__in=list(gone.hashes)).delete()
            existing = {
                str(h)
                for h in await Contact.filter(owner_id=owner_id).values_list(
                    "phone_hash", flat=True
                )
            }
            if len(existing | set(found.hashes)) > MAX_CONTACTS:
                raise _too_many()
            await self._store(
                owner_id, {h: i for h, i in found.hashes.items() if h not in existing}
            )
        return await self._rematch(owner_id, found)

    async def _patch_postgres(self, owner_id: str, found: Normalized, gone: Normalized) -> Matches:
        added = list(found.hashes)
        async with in_transaction() as conn:
            if gone.hashes:
                await conn.execute_query_dict(_REMOVE, [owner_id, list(gone.hashes)])
            (count,) = await conn.execute_query_dict(_COUNT_WITH, [owner_id, added])
            if count["total"] > MAX_CONTACTS:
                raise _too_many()
            if added:
                await conn.execute_query_dict(_ADD, [owner_id, added])
            rows = await conn.execute_query_dict(_REMATCH, [owner_id, added])
        return _matches(rows, found)

    async def clear(self, owner_id: str) -> None:
        async with in_transaction():
            await Contact.filter(owner_id=owner_id).delete()
            await UserContact.filter(owner_id=owner_id).delete()

    async def _store(self, owner_id: str, hashes: dict[str, list[int]]) -> None:
        await Contact.bulk_create(
            [Contact(owner_id=owner_id, phone_hash=h) for h in hashes], batch_size=1000
        )

    async def _rematch(self, owner_id: str, found: Normalized) -> Matches:
        """Make ``user_contacts`` of the owner agree with the address book; its matches."""
        matched = await sql.fetch(
            "SELECT c.phone_hash, d.user_id FROM contacts c "
            "JOIN phone_directory d ON d.phone_hash = c.phone_hash WHERE c.owner_id = ?",
            [owner_id],
        )
        users = {str(r["user_id"]) for r in matched} - {owner_id}
        current = {
            str(u)
            for u in await UserContact.filter(owner_id=owner_id).values_list(
                "contact_id", flat=True
            )
        }
        async with in_transaction():
            if current - users:
                await UserContact.filter(
                    owner_id=owner_id, contact_id__in=list(current - users)
                ).delete()
            await UserContact.bulk_create(
                [UserContact(owner_id=owner_id, contact_id=u) for u in users - current],
                ignore_conflicts=True,
            )
        indexes: dict[str, list[int]] = {}
        for row in matched:
            user = str(row["user_id"])
            if user != owner_id and row["phone_hash"] in found.hashes:
                indexes.setdefault(user, []).extend(found.hashes[row["phone_hash"]])
        ordered = sorted((sorted(i), u) for u, i in indexes.items())
        cards = {c.user_id: c for c in await profile_cards([u for _, u in ordered])}
        return [(cards[u], i) for i, u in ordered if u in cards]

    async def matched(self, owner_id: str) -> list[tuple[ProfileCard, bool]]:
        """The owner's contacts who use Parley (their cards as they allow the owner to see
        them), and whether each has the owner too."""
        contacts = [
            str(u)
            for u in await UserContact.filter(owner_id=owner_id).values_list(
                "contact_id", flat=True
            )
        ]
        mutual = set(await self.mutual(owner_id))
        hidden = {
            str(u)
            for u in await Block.filter(blocked_id=owner_id).values_list("blocker_id", flat=True)
        }
        cards = await profile_cards([c for c in contacts if c not in hidden])
        return [(card, card.user_id in mutual) for card in await as_seen_by(owner_id, cards)]

    # -- the relation -------------------------------------------------------------

    async def mutual(self, user_id: str) -> list[str]:
        """Users who have this user's number and whose number this user has."""
        rows = await sql.fetch(
            "SELECT a.contact_id FROM user_contacts a JOIN user_contacts b "
            "ON b.owner_id = a.contact_id AND b.contact_id = a.owner_id WHERE a.owner_id = ?",
            [user_id],
        )
        return [str(r["contact_id"]) for r in rows]

    async def listed_by(self, user_id: str) -> list[str]:
        """Users whose address book holds a number of this user."""
        return [
            str(u)
            for u in await UserContact.filter(contact_id=user_id).values_list("owner_id", flat=True)
        ]

    # -- the other side: a user's verified numbers changed ------------------------

    async def sync_phones(self, user_id: str) -> list[str]:
        """Bring the directory and the relation up to date for one user; owners told."""
        phones = await Identity.filter(
            user_id=user_id, kind="phone", verified_at__not_isnull=True
        ).values_list("value", flat=True)
        wanted = {phone_hash(self._secret, str(p)) for p in phones}
        have = set(
            await PhoneDirectory.filter(user_id=user_id).values_list("phone_hash", flat=True)
        )
        added, removed = wanted - have, have - wanted
        async with in_transaction():
            if removed:
                await PhoneDirectory.filter(phone_hash__in=list(removed)).delete()
            if added:
                # A number moves with its identity; an old row of another user goes.
                await PhoneDirectory.filter(phone_hash__in=list(added)).delete()
                await PhoneDirectory.bulk_create(
                    [PhoneDirectory(phone_hash=h, user_id=user_id) for h in added]
                )
        joined: list[str] = []
        if wanted:
            # Everyone holding one of the numbers who is not linked yet: this
            # does not depend on what the directory held before, so a replay, a
            # rebuilt directory or an earlier failure still tells everyone once.
            owners = set(
                str(o)
                for o in await Contact.filter(phone_hash__in=list(wanted)).values_list(
                    "owner_id", flat=True
                )
            ) - {user_id}
            already = set(
                str(o)
                for o in await UserContact.filter(
                    contact_id=user_id, owner_id__in=list(owners)
                ).values_list("owner_id", flat=True)
            )
            joined = sorted(owners - already)
            await UserContact.bulk_create(
                [UserContact(owner_id=o, contact_id=user_id) for o in joined],
                ignore_conflicts=True,
            )
        if removed:
            await self._drop_stale(user_id, wanted)
        if joined:
            card = await card_of(user_id)
            if card is not None:
                # Holding someone's number finds them; their card is as they allow.
                whole = await seen_whole_by(user_id, joined)
                for shown, told in (
                    (card, [o for o in joined if o in whole]),
                    (limited(card), [o for o in joined if o not in whole]),
                ):
                    if told:
                        await self._emit(
                            CONTACT_JOINED, {"contact": shown.model_dump(mode="json")}, told
                        )
        return joined

    async def _drop_stale(self, user_id: str, wanted: set[str]) -> None:
        """Owners who no longer hold any of the user's numbers lose the relation."""
        owners = set(
            str(o)
            for o in await UserContact.filter(contact_id=user_id).values_list("owner_id", flat=True)
        )
        keep = (
            set(
                str(o)
                for o in await Contact.filter(
                    owner_id__in=list(owners), phone_hash__in=list(wanted)
                ).values_list("owner_id", flat=True)
            )
            if wanted
            else set()
        )
        if owners - keep:
            await UserContact.filter(contact_id=user_id, owner_id__in=list(owners - keep)).delete()

    async def rebuild_directory(self, batch: int = 1000) -> None:
        """Recompute every verified number's hash (``parley reindex``, or a new secret)."""
        await PhoneDirectory.all().delete()
        rows = await Identity.filter(kind="phone", verified_at__not_isnull=True).values_list(
            "value", "user_id"
        )
        entries = [
            PhoneDirectory(phone_hash=phone_hash(self._secret, str(v)), user_id=u) for v, u in rows
        ]
        await PhoneDirectory.bulk_create(entries, batch_size=batch, ignore_conflicts=True)

    async def _emit(self, event: str, data: object, user_ids: Iterable[str]) -> None:
        await self._emitter.emit_to_users(event, data, list(user_ids))
