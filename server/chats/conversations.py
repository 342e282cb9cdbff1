"""Conversations: direct chats and groups, members, roles, settings (ARCHITECTURE.md section 5).

Seed 001: every chat is a conversation; a direct chat is one of two people.
Roles: the owner may do everything; admins manage members (not other admins)
and the group's title, topic and avatar; members may leave. Every membership
or settings change is a ``system`` message in the conversation, fanned out to
every member (and to whoever was removed), so devices learn of it the same way
they learn of messages and sync fills any gap.
"""

from __future__ import annotations

import uuid
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from config.errors import ConflictError, InvalidRequestError, NotFoundError, PermissionDeniedError
from config.settings import ChatSettings
from server.chats.access import Membership, RosterCache, Rosters, parse_id, require_member
from server.chats.messages import MessageService
from server.chats.schemas import ConversationOut, ConversationPage, MemberOut
from server.media.service import make_avatar, unpublish_unless_avatar
from server.users.service import UserNotFoundError, UserService
from storage.models import Block, Conversation, Member, User


def _system_id() -> str:
    return f"system:{uuid.uuid4().hex}"


class ConversationService:
    def __init__(
        self,
        settings: ChatSettings,
        users: UserService,
        messages: MessageService,
        rosters: Rosters | None = None,
    ) -> None:
        self._settings = settings
        self._users = users
        self._messages = messages
        self._rosters = rosters or Rosters(RosterCache())

    # -- creating -------------------------------------------------------------

    async def open_direct(self, user_id: str, other_id: str, mode: str) -> ConversationOut:
        """The direct conversation of two users in ``mode``, created on first use."""
        if user_id == other_id:
            raise InvalidRequestError("user_id: cannot open a direct conversation with yourself")
        if not await self._users.exists(other_id):
            raise UserNotFoundError("user_id: no such user")
        if await Block.exists(blocker_id=other_id, blocked_id=user_id):
            raise PermissionDeniedError(
                "this person has blocked you; you cannot start a chat", code="blocked"
            )
        key = ":".join((mode, *sorted((user_id, other_id))))
        for _ in range(2):
            conversation = await Conversation.get_or_none(direct_key=key)
            if conversation is not None:
                return await self._out(conversation)
            try:
                async with in_transaction():
                    conversation = await Conversation.create(
                        kind="direct", mode=mode, direct_key=key, created_by_id=user_id
                    )
                    await Member.bulk_create(
                        [
                            Member(conversation=conversation, user_id=user_id, role="member"),
                            Member(conversation=conversation, user_id=other_id, role="member"),
                        ]
                    )
                return await self._out(conversation)
            except IntegrityError:
                continue  # the other person opened it at the same moment
        raise RuntimeError("direct conversation vanished while opening it")

    async def create_group(
        self, user_id: str, *, title: str, topic: str, mode: str, member_ids: list[str]
    ) -> ConversationOut:
        """A group owned by its creator, with the given members."""
        others = sorted(set(member_ids) - {user_id})
        self._check_size(mode, len(others) + 1)
        await self._require_users(others)
        async with in_transaction():
            conversation = await Conversation.create(
                kind="group", mode=mode, title=title, topic=topic, created_by_id=user_id
            )
            await Member.bulk_create(
                [Member(conversation=conversation, user_id=user_id, role="owner")]
                + [Member(conversation=conversation, user_id=o, role="member") for o in others]
            )
        await self._system(
            str(conversation.id),
            user_id,
            {"event": "created", "title": title, "member_ids": others},
        )
        return await self._out(await Conversation.get(id=conversation.id))

    # -- reading --------------------------------------------------------------

    async def list_for(self, user_id: str, *, limit: int, cursor: str | None) -> ConversationPage:
        query = (
            Member.filter(user_id=user_id)
            .select_related("conversation")
            .order_by("conversation_id")
        )
        if cursor is not None:
            query = query.filter(conversation_id__gt=parse_id(cursor, "cursor"))
        rows = await query.limit(limit + 1)
        page = rows[:limit]
        members: dict[str, list[Member]] = {str(m.conversation_id): [] for m in page}
        if page:
            for member in await Member.filter(
                conversation_id__in=[m.conversation_id for m in page]
            ).order_by("joined_at", "id"):
                members[str(member.conversation_id)].append(member)
        outs = [
            conversation_out(m.conversation, members[str(m.conversation_id)], me=m) for m in page
        ]
        next_cursor = str(page[-1].conversation_id) if len(rows) > limit else None
        return ConversationPage(conversations=outs, next_cursor=next_cursor)

    async def get(self, user_id: str, conversation_id: str) -> ConversationOut:
        membership = await require_member(user_id, conversation_id)
        return await self._out(membership.conversation, me_user=user_id)

    # -- changing -------------------------------------------------------------

    async def update(
        self, user_id: str, conversation_id: str, changes: dict[str, Any]
    ) -> ConversationOut:
        """Rename, set the topic or the avatar (group admins and the owner)."""
        membership = await self._group_member(user_id, conversation_id)
        membership.require_role("admin", "owner")
        if not changes:
            return await self._out(membership.conversation, me_user=user_id)
        if changes.get("avatar_media_id") is not None:
            await make_avatar(user_id, str(changes["avatar_media_id"]), "avatar_media_id")
        await Conversation.filter(id=conversation_id).update(**changes)
        old_avatar = membership.conversation.avatar_media_id
        if "avatar_media_id" in changes and old_avatar is not None:
            await unpublish_unless_avatar(old_avatar)
        await self._system(
            conversation_id,
            user_id,
            {
                "event": "updated",
                **{k: str(v) if v is not None else None for k, v in changes.items()},
            },
        )
        return await self._out(await Conversation.get(id=conversation_id), me_user=user_id)

    async def add_members(
        self, user_id: str, conversation_id: str, member_ids: list[str]
    ) -> ConversationOut:
        membership = await self._group_member(user_id, conversation_id)
        membership.require_role("admin", "owner")
        new = sorted(set(member_ids) - set(membership.member_ids))
        if not new:
            return await self._out(membership.conversation, me_user=user_id)
        self._check_size(membership.conversation.mode, len(membership.member_ids) + len(new))
        await self._require_users(new)
        try:
            await Member.bulk_create(
                [Member(conversation_id=conversation_id, user_id=u, role="member") for u in new]
            )
        except IntegrityError:
            raise ConflictError("member_ids: someone was added at the same moment") from None
        await self._system(conversation_id, user_id, {"event": "members_added", "user_ids": new})
        return await self._out(await Conversation.get(id=conversation_id), me_user=user_id)

    async def remove_member(self, user_id: str, conversation_id: str, target_id: str) -> None:
        """Remove someone (admins remove members, the owner removes anyone); they stop
        receiving at once and get the system message that says so."""
        membership = await self._group_member(user_id, conversation_id)
        membership.require_role("admin", "owner")
        target = await Member.get_or_none(conversation_id=conversation_id, user_id=target_id)
        if target is None:
            raise NotFoundError("user_id: not a member", code="member_not_found")
        if target.role == "owner" or (target.role == "admin" and membership.role != "owner"):
            raise PermissionDeniedError(
                "only the owner may remove an admin; nobody removes the owner", code="not_allowed"
            )
        await target.delete()
        await self._system(
            conversation_id,
            user_id,
            {"event": "member_removed", "user_id": target_id},
            notify=[target_id],
        )

    async def set_role(
        self, user_id: str, conversation_id: str, target_id: str, role: str
    ) -> ConversationOut:
        """The owner makes members admins or back; making someone owner hands ownership over."""
        membership = await self._group_member(user_id, conversation_id)
        membership.require_role("owner")
        target = await Member.get_or_none(conversation_id=conversation_id, user_id=target_id)
        if target is None:
            raise NotFoundError("user_id: not a member", code="member_not_found")
        if target_id == user_id:
            raise InvalidRequestError("user_id: hand ownership to someone else instead")
        async with in_transaction():
            if role == "owner":
                await Member.filter(id=membership.member_id).update(role="admin")
            await Member.filter(id=target.id).update(role=role)
        await self._system(
            conversation_id, user_id, {"event": "role_changed", "user_id": target_id, "role": role}
        )
        return await self._out(await Conversation.get(id=conversation_id), me_user=user_id)

    async def leave(self, user_id: str, conversation_id: str) -> None:
        """Leave a group; an owner who leaves hands ownership to the longest-standing admin
        (or member)."""
        membership = await self._group_member(user_id, conversation_id)
        async with in_transaction():
            await Member.filter(id=membership.member_id).delete()
            if membership.role == "owner":
                remaining = Member.filter(conversation_id=conversation_id).order_by(
                    "joined_at", "id"
                )
                heir = await remaining.filter(role="admin").first() or await remaining.first()
                if heir is not None:
                    await Member.filter(id=heir.id).update(role="owner")
        await self._system(
            conversation_id, user_id, {"event": "member_left", "user_id": user_id}, notify=[user_id]
        )

    # -- helpers --------------------------------------------------------------

    def _check_size(self, mode: str, size: int) -> None:
        limit = (
            self._settings.max_encrypted_group_members
            if mode == "encrypted"
            else self._settings.max_group_members
        )
        if size > limit:
            raise InvalidRequestError(
                f"member_ids: a{'n encrypted' if mode == 'encrypted' else ''} group has at most "
                f"{limit} members",
                code="too_many_members",
            )

    async def _group_member(self, user_id: str, conversation_id: str) -> Membership:
        membership = await require_member(user_id, conversation_id)
        if membership.conversation.kind != "group":
            raise InvalidRequestError(
                "a direct conversation has no members to change, settings or roles",
                code="not_a_group",
            )
        return membership

    async def _require_users(self, user_ids: list[str]) -> None:
        for uid in user_ids:
            parse_id(uid, "member_ids")
        found = {str(u) for u in await User.filter(id__in=user_ids).values_list("id", flat=True)}
        missing = sorted(set(user_ids) - found)
        if missing:
            raise UserNotFoundError(f"member_ids: no such user {', '.join(missing)}")

    async def _system(
        self,
        conversation_id: str,
        actor_id: str,
        body: dict[str, Any],
        notify: list[str] | None = None,
    ) -> None:
        # Every system message follows a change of members, roles or settings.
        await self._rosters.changed(conversation_id)
        await self._messages.append(
            conversation_id,
            sender_id=None,
            client_msg_id=_system_id(),
            kind="system",
            body={**body, "by": actor_id},
            notify=notify,
        )

    async def _out(self, conversation: Conversation, me_user: str | None = None) -> ConversationOut:
        members = await Member.filter(conversation_id=conversation.id).order_by("joined_at", "id")
        me = next((m for m in members if str(m.user_id) == me_user), None)
        return conversation_out(conversation, members, me=me)


def conversation_out(
    conversation: Conversation, members: list[Member], *, me: Member | None = None
) -> ConversationOut:
    return ConversationOut(
        id=str(conversation.id),
        kind=conversation.kind,
        mode=conversation.mode,
        title=conversation.title,
        topic=conversation.topic,
        avatar_media_id=str(conversation.avatar_media_id) if conversation.avatar_media_id else None,
        last_seq=conversation.last_seq,
        read_seq=me.read_seq if me is not None else 0,
        unread=max(0, conversation.last_seq - me.read_seq) if me is not None else 0,
        members=[MemberOut(user_id=str(m.user_id), role=m.role) for m in members],
        created_at=conversation.created_at,
    )
