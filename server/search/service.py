"""People search (seed 003), message search (seed 001) and the write loader (seed 000)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from config.errors import InvalidRequestError, NotFoundError
from server.chats.access import require_member
from server.chats.messages import message_out
from server.contacts.cards import profile_cards
from server.contacts.service import ContactService
from server.search.indexer import Indexer
from server.search.schemas import EventStatus, MessageSearchPage, PeoplePage
from server.users.interests import CATALOGUE
from storage import sql
from storage.models import Event, Member, Message
from storage.search import SearchIndex

MAX_QUERY = 200
MIN_QUERY = 3
MAX_OFFSET = 1000


# What a people search needs to know of the searcher, in one round trip:
# who they blocked or were blocked by (never shown either way), whose address
# books hold their number (they may see "contacts" profiles), and the
# interests on their profile (used when the search names none).
_SEARCHER = """
SELECT 'block' AS kind, CAST(blocked_id AS TEXT) AS value FROM blocks WHERE blocker_id = ?
UNION ALL
SELECT 'block', CAST(blocker_id AS TEXT) FROM blocks WHERE blocked_id = ?
UNION ALL
SELECT 'listed', CAST(owner_id AS TEXT) FROM user_contacts WHERE contact_id = ?
UNION ALL
SELECT 'interests', CAST(interests AS TEXT) FROM profiles WHERE user_id = ?
"""


class EventNotFoundError(NotFoundError):
    code = "event_not_found"


@dataclass(frozen=True, slots=True)
class Searcher:
    blocked: set[str]  # blocked by or blocking the searcher
    listed_by: set[str]  # people whose address book holds the searcher's number
    interests: list[str]  # on the searcher's profile


async def searcher(user_id: str) -> Searcher:
    """The searcher's blocks, who lists them and their profile's interests (one query)."""
    blocked: set[str] = set()
    listed_by: set[str] = set()
    interests: list[str] = []
    for row in await sql.fetch(_SEARCHER, [user_id] * 4):
        kind, value = row["kind"], row["value"]
        if kind == "block":
            blocked.add(value)
        elif kind == "listed":
            listed_by.add(value)
        else:
            interests = list(json.loads(value))
    return Searcher(blocked, listed_by, interests)


def _ideographic(text: str) -> bool:
    """CJK scripts (from U+2E80): a character is a syllable or a word, not a letter."""
    return any(ch >= "\u2e80" for ch in text)


def _page(offset: int, limit: int, got: int) -> int | None:
    nxt = offset + limit
    return nxt if got == limit and nxt <= MAX_OFFSET else None


class SearchService:
    def __init__(self, index: SearchIndex, indexer: Indexer, contacts: ContactService) -> None:
        self._index = index
        self._indexer = indexer
        self._contacts = contacts

    async def people(
        self, user_id: str, query: str, interests: list[str], limit: int, offset: int
    ) -> PeoplePage:
        query = query.strip()
        if 0 < len(query) < MIN_QUERY and not _ideographic(query):
            # Matching is by trigrams: one or two letters match everybody a
            # bit. Two CJK characters are a whole name, so they may search.
            raise InvalidRequestError(
                f"q: give at least {MIN_QUERY} characters", code="query_too_short"
            )
        unknown = sorted(set(interests) - set(CATALOGUE))
        if unknown:
            raise InvalidRequestError(
                f"interests: not in the catalogue: {', '.join(unknown[:5])}",
                code="unknown_interest",
            )
        me = await searcher(user_id)
        if not interests:
            # Without a choice, "shared" means shared with the searcher's profile.
            interests = me.interests
        if not query and not interests:
            raise InvalidRequestError(
                "give `q` (a name) or `interests`, or list interests on your profile",
                code="no_search_terms",
            )
        hits = await self._index.search_people(
            query=query,
            interests=interests,
            exclude={user_id} | me.blocked,
            contacts_of=me.listed_by,
            limit=limit,
            offset=offset,
        )
        shared = {h.user_id: h.shared_interests for h in hits}
        people = [
            card.model_copy(update={"shared_interests": shared[card.user_id]})
            for card in await profile_cards([h.user_id for h in hits])
        ]
        return PeoplePage(people=people, next_offset=_page(offset, limit, len(hits)))

    async def messages(
        self, user_id: str, query: str, conversation_id: str | None, limit: int, offset: int
    ) -> MessageSearchPage:
        query = query.strip()
        if len(query) < MIN_QUERY and not (query and _ideographic(query)):
            raise InvalidRequestError(
                f"q: give at least {MIN_QUERY} characters", code="query_too_short"
            )
        if conversation_id is not None:
            membership = await require_member(user_id, conversation_id)
            ids = [conversation_id] if membership.conversation.mode == "plaintext" else []
        else:
            ids = [
                str(c)
                for c in await Member.filter(
                    user_id=user_id, conversation__mode="plaintext"
                ).values_list("conversation_id", flat=True)
            ]
        hits = (
            await self._index.search_messages(
                query=query, conversation_ids=ids, limit=limit, offset=offset
            )
            if ids
            else []
        )
        found = {str(m.id): m for m in await Message.filter(id__in=[h.message_id for h in hits])}
        messages = [
            message_out(found[h.message_id])
            for h in hits
            if h.message_id in found and found[h.message_id].deleted_at is None
        ]
        return MessageSearchPage(messages=messages, next_offset=_page(offset, limit, len(hits)))

    async def event(self, event_id: int) -> EventStatus:
        position = await self._indexer.position()
        if event_id > position and not await Event.exists(id=event_id):
            raise EventNotFoundError("no such event")
        return EventStatus(id=event_id, indexed=event_id <= position, position=position)
