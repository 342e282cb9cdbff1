"""Profiles (seed 003) and status (seed 002).

A profile is the user's names plus age, gender, interests from the catalogue
and who may find them. Every change is an outbox event, so search follows.
A status ("party mode") is pushed at once to mutual contacts only and kept as
a list of changes their clients page through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tortoise.transactions import in_transaction

from config.errors import InvalidRequestError, NotFoundError
from realtime.events import STATUS_UPDATED, Emitter
from server.users.interests import CATALOGUE
from server.users.schemas import (
    ProfileCard,
    ProfileOut,
    ProfileUpdate,
    ProfileUpdated,
    StatusChangeOut,
    StatusChangePage,
    StatusOut,
    StatusRequest,
)
from server.users.service import shares_with, taken_part_in
from storage import outbox
from storage.models import Block, Member, Profile, StatusChange, User, UserContact

MAX_STATUS_LIFETIME = timedelta(days=7)


class ProfileNotFoundError(NotFoundError):
    code = "user_not_found"


def _card(user: User, profile: Profile | None) -> ProfileCard:
    return ProfileCard(
        user_id=str(user.id),
        code=user.code,
        nickname=user.nickname,
        first_name=user.first_name,
        last_name=user.last_name,
        age=profile.age if profile else None,
        gender=profile.gender if profile else "",
        interests=list(profile.interests) if profile else [],
        avatar_media_id=str(user.avatar_media_id) if user.avatar_media_id else None,
    )


def _status(profile: Profile | None, now: datetime) -> StatusOut:
    if profile is None or not profile.status_state:
        return StatusOut(state="", text="", expires_at=None, updated_at=None)
    if profile.status_expires_at is not None and profile.status_expires_at <= now:
        return StatusOut(state="", text="", expires_at=None, updated_at=profile.status_expires_at)
    return StatusOut(
        state=profile.status_state,
        text=profile.status_text,
        expires_at=profile.status_expires_at,
        updated_at=profile.status_updated_at,
    )


async def cards(user_ids: list[str]) -> list[ProfileCard]:
    """Profile cards of these users, in the order given (unknown ids left out)."""
    if not user_ids:
        return []
    users = {str(u.id): u for u in await User.filter(id__in=user_ids)}
    profiles = {str(p.user_id): p for p in await Profile.filter(user_id__in=list(users))}
    return [_card(users[i], profiles.get(i)) for i in dict.fromkeys(user_ids) if i in users]


async def card_of(user_id: str) -> ProfileCard | None:
    found = await cards([user_id])
    return found[0] if found else None


async def as_seen_by(viewer_id: str, cards: list[ProfileCard]) -> list[ProfileCard]:
    """The cards as ``viewer_id`` may see them.

    The whole card goes to people the owner's ``visibility`` lets find them
    (everyone; for ``contacts``, people whose number is in the owner's address
    book) and to people they talk with (``shares_with``: a conversation the
    owner took part in, not one someone opened at them). Anyone else sees
    only the handle, nickname and avatar (``limited``): an id learnt somewhere,
    or a number in one's own address book, must not open a profile its owner
    keeps out of search.
    """
    others = [c.user_id for c in cards if c.user_id != viewer_id]
    if not others:
        return cards
    private = {
        str(u): v
        for u, v in await Profile.filter(user_id__in=others)
        .exclude(visibility="everyone")
        .values_list("user_id", "visibility")
    }
    if not private:
        return cards
    listing = {
        str(u)
        for u in await UserContact.filter(
            owner_id__in=[u for u, v in private.items() if v == "contacts"], contact_id=viewer_id
        ).values_list("owner_id", flat=True)
    }
    talking = await shares_with(viewer_id, {u for u in private if u not in listing})
    hidden = set(private) - listing - talking
    return [limited(c) if c.user_id in hidden else c for c in cards]


async def seen_whole_by(owner_id: str, viewers: list[str]) -> set[str]:
    """Those of ``viewers`` who may see ``owner_id``'s whole card (the rule of
    :func:`as_seen_by`, for one owner and many viewers: a notice to many people)."""
    profile = await Profile.get_or_none(user_id=owner_id)
    visibility = profile.visibility if profile else "everyone"
    if visibility == "everyone":
        return set(viewers)
    allowed: set[str] = set()
    if visibility == "contacts":
        allowed |= {
            str(u)
            for u in await UserContact.filter(
                owner_id=owner_id, contact_id__in=viewers
            ).values_list("contact_id", flat=True)
        }
    talked = await Member.filter(
        conversation_id__in=await taken_part_in(owner_id), user_id__in=viewers
    ).values_list("user_id", flat=True)
    return allowed | {str(u) for u in talked}


def limited(card: ProfileCard) -> ProfileCard:
    """Only the handle, nickname and avatar of a card."""
    return card.model_copy(
        update={
            "first_name": "",
            "last_name": "",
            "age": None,
            "gender": "",
            "interests": [],
            "limited": True,
        }
    )


async def blocked_between(user_id: str) -> set[str]:
    """Everyone this user blocked or was blocked by: they never see each other in search."""
    made = await Block.filter(blocker_id=user_id).values_list("blocked_id", flat=True)
    received = await Block.filter(blocked_id=user_id).values_list("blocker_id", flat=True)
    return {str(u) for u in (*made, *received)}


class ProfileService:
    def __init__(
        self, emitter: Emitter, mutual_contacts: Callable[[str], Awaitable[list[str]]]
    ) -> None:
        self._emitter = emitter
        self._mutual = mutual_contacts

    async def _load(self, user_id: str) -> tuple[User, Profile | None]:
        user = await User.get_or_none(id=user_id)
        if user is None:
            raise ProfileNotFoundError("no such user")
        return user, await Profile.get_or_none(user_id=user_id)

    async def me(self, user_id: str) -> ProfileOut:
        user, profile = await self._load(user_id)
        return ProfileOut(
            **_card(user, profile).model_dump(),
            visibility=profile.visibility if profile else "everyone",
            status=_status(profile, datetime.now(UTC)),
        )

    async def card(self, viewer_id: str, user_id: str) -> ProfileCard:
        """Another user's card as the viewer may see it (:func:`as_seen_by`); a user who
        blocked the viewer is not found."""
        if await Block.exists(blocker_id=user_id, blocked_id=viewer_id):
            raise ProfileNotFoundError("no such user")
        user, profile = await self._load(user_id)
        [card] = await as_seen_by(viewer_id, [_card(user, profile)])
        return card

    async def update(self, user_id: str, change: ProfileUpdate) -> ProfileUpdated:
        if change.interests is not None:
            unknown = sorted(set(change.interests) - set(CATALOGUE))
            if unknown:
                raise InvalidRequestError(
                    "interests: not in the catalogue (GET /v1/interests): "
                    + ", ".join(unknown[:5]),
                    code="unknown_interest",
                )
        user_fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("nickname", change.nickname),
                ("first_name", change.first_name),
                ("last_name", change.last_name),
            )
            if v is not None
        }
        profile_fields: dict[str, Any] = {
            k: v
            for k, v in (
                ("age", change.age),
                ("gender", change.gender),
                (
                    "interests",
                    sorted(set(change.interests)) if change.interests is not None else None,
                ),
                ("visibility", change.visibility),
            )
            if v is not None
        }
        if change.clear_age:
            profile_fields["age"] = None
        async with in_transaction():
            if user_fields:
                await User.filter(id=user_id).update(**user_fields, updated_at=datetime.now(UTC))
            if profile_fields:
                await Profile.get_or_create(user_id=user_id)
                await Profile.filter(user_id=user_id).update(**profile_fields)
            event_id = await outbox.record(outbox.PERSON, {"user_id": user_id})
        me = await self.me(user_id)
        return ProfileUpdated(**me.model_dump(), event_id=event_id)

    # -- status -----------------------------------------------------------------

    async def _unblocked_mutual(self, user_id: str) -> list[str]:
        """Mutual contacts, less anyone on either side of a block with this user."""
        blocked = await blocked_between(user_id)
        return [u for u in await self._mutual(user_id) if u not in blocked]

    async def set_status(self, user_id: str, request: StatusRequest | None) -> StatusOut:
        """Set (or with None clear) the status; mutual contacts are told at once."""
        now = datetime.now(UTC)
        state, text, expires = "", "", None
        if request is not None:
            state, text, expires = request.state, request.text, request.expires_at
            if expires is not None:
                if expires.tzinfo is None:
                    raise InvalidRequestError("expires_at: give a time zone (e.g. Z)")
                if not now < expires <= now + MAX_STATUS_LIFETIME:
                    raise InvalidRequestError("expires_at: must be in the future and within 7 days")
        async with in_transaction():
            await Profile.get_or_create(user_id=user_id)
            await Profile.filter(user_id=user_id).update(
                status_state=state,
                status_text=text,
                status_expires_at=expires,
                status_updated_at=now,
            )
            change = await StatusChange.create(
                user_id=user_id, state=state, text=text, expires_at=expires, created_at=now
            )
        status = StatusOut(state=state, text=text, expires_at=expires, updated_at=now)
        mutual = await self._unblocked_mutual(user_id)
        if mutual:
            await self._emitter.emit_to_users(
                STATUS_UPDATED,
                {"user_id": user_id, "change_id": change.id, **status.model_dump(mode="json")},
                mutual,
            )
        return status

    async def updates(self, user_id: str, since: int, limit: int) -> StatusChangePage:
        """Status changes of the user's mutual contacts after change id ``since``, oldest first."""
        mutual = await self._unblocked_mutual(user_id)
        rows = (
            await StatusChange.filter(user_id__in=mutual, id__gt=since)
            .order_by("id")
            .limit(limit + 1)
            if mutual
            else []
        )
        page = rows[:limit]
        return StatusChangePage(
            updates=[
                StatusChangeOut(
                    id=r.id,
                    user_id=str(r.user_id),
                    state=r.state,
                    text=r.text,
                    expires_at=r.expires_at,
                    created_at=r.created_at,
                )
                for r in page
            ],
            next_since=page[-1].id if page else since,
            has_more=len(rows) > limit,
        )
