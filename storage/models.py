"""The relational schema (Tortoise ORM). Same schema on SQLite and PostgreSQL.

Changing a model means a new migration: ``tortoise -c storage.database.TORTOISE_CLI_CONFIG
makemigrations`` (see docs/OPERATIONS.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from tortoise import fields
from tortoise.models import Model


class User(Model):
    """A person. Identities (phone, e-mail, wallets) hang off it."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    # Stable public handle (seed 000's identity ``code``); never reused.
    code = fields.CharField(max_length=32, unique=True)
    # Seed 002: a nickname, not unique, overwritten by each phone sign-in.
    nickname = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "users"


class Identity(Model):
    """One way to sign in, proven and owned by exactly one user."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="identities", on_delete=fields.CASCADE
    )
    # phone | email | ethereum | substrate
    kind = fields.CharField(max_length=16)
    # Normalized: E.164 for phones, lower case for e-mail and addresses.
    value = fields.CharField(max_length=255)
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "identities"
        unique_together = (("kind", "value"),)


class Session(Model):
    """A signed-in device. Its refresh tokens form one rotation family."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="sessions", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID
    device_name = fields.CharField(max_length=128, default="")
    user_agent = fields.CharField(max_length=256, default="")
    ip = fields.CharField(max_length=64, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    revoked_reason = fields.CharField(max_length=32, null=True)

    class Meta:
        table = "sessions"


class RefreshToken(Model):
    """A single-use refresh token, stored only as its SHA-256."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    session: fields.ForeignKeyRelation[Session] = fields.ForeignKeyField(
        "parley.Session", related_name="refresh_tokens", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refresh_tokens"


class Conversation(Model):
    """A chat. Seed 001: every chat is a conversation, and direct chats have two members."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    # direct | group
    kind = fields.CharField(max_length=16)
    # plaintext | encrypted; fixed at creation.
    mode = fields.CharField(max_length=16)
    # "<smaller user id>:<larger user id>" for direct chats: one per pair.
    direct_key = fields.CharField(max_length=80, unique=True, null=True)
    title = fields.CharField(max_length=128, default="")
    # Highest seq handed out; the next message takes last_seq + 1.
    last_seq = fields.BigIntField(default=0)
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="created_conversations", null=True, on_delete=fields.SET_NULL
    )
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "conversations"


class Member(Model):
    """A user's membership of a conversation."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "parley.Conversation", related_name="members", on_delete=fields.CASCADE
    )
    conversation_id: uuid.UUID
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="memberships", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID
    # owner | admin | member
    role = fields.CharField(max_length=16, default="member")
    joined_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "conversation_members"
        unique_together = (("conversation", "user"),)


class Message(Model):
    """A message: gap-free ``seq`` per conversation, idempotent by ``client_msg_id``."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "parley.Conversation", related_name="messages", on_delete=fields.CASCADE
    )
    conversation_id: uuid.UUID
    seq = fields.BigIntField()
    sender: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="sent_messages", null=True, on_delete=fields.SET_NULL
    )
    sender_id: uuid.UUID | None
    client_msg_id = fields.CharField(max_length=64)
    # text | system (envelope and image arrive with end-to-end encryption and media)
    kind = fields.CharField(max_length=16)
    body: fields.Field[Any] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)
    edited_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "messages"
        unique_together = (("conversation", "seq"), ("conversation", "sender", "client_msg_id"))
