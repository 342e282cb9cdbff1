"""People search (seed 003), message search (seed 001) and the write loader (seed 000)."""

from __future__ import annotations

from config.errors import InvalidRequestError, NotFoundError
from server.chats.access import require_member
from server.chats.messages import message_out
from server.contacts.service import ContactService
from server.search.indexer import Indexer
from server.search.schemas import EventStatus, MessageSearchPage, PeoplePage
from server.users.interests import CATALOGUE
from server.users.profiles import blocked_between, cards
from storage.models import Event, Member, Message, Profile
from storage.search import SearchIndex

MAX_QUERY = 200
MIN_QUERY = 3
MAX_OFFSET = 1000


class EventNotFoundError(NotFoundError):
    code = "event_not_found"


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
        if not interests:
            # Without a choice, "shared" means shared with the searcher's profile.
            profile = await Profile.get_or_none(user_id=user_id)
            interests = list(profile.interests) if profile is not None else []
        if not query and not interests:
            raise InvalidRequestError(
                "give `q` (a name) or `interests`, or list interests on your profile"
            )
        hits = await self._index.search_people(
            query=query,
            interests=interests,
            exclude={user_id} | await blocked_between(user_id),
            contacts_of=set(await self._contacts.listed_by(user_id)),
            limit=limit,
            offset=offset,
        )
        shared = {h.user_id: h.shared_interests for h in hits}
        people = [
            card.model_copy(update={"shared_interests": shared[card.user_id]})
            for card in await cards([h.user_id for h in hits])
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
