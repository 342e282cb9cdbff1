"""The relational schema (Tortoise ORM). Same schema on SQLite and PostgreSQL.

Changing a model means a new migration: ``tortoise -c storage.database.TORTOISE_CLI_CONFIG
makemigrations`` (see docs/OPERATIONS.md).
"""

from __future__ import annotations

import uuid
from typing import Any

from tortoise import fields
from tortoise.models import Model

# Column widths that lookups by user input must respect (a longer value
# cannot be stored, so it cannot match either).
LOGIN_KEY_LENGTH = 64
IDENTITY_VALUE_LENGTH = 255


class User(Model):
    """A person. Identities (phone, e-mail, wallets) hang off it."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    # Stable public handle (seed 000's identity ``code``); never reused.
    code = fields.CharField(max_length=32, unique=True)
    # Seed 002: a nickname, not unique, overwritten by each phone sign-in.
    nickname = fields.CharField(max_length=64, default="")
    first_name = fields.CharField(max_length=100, default="")
    last_name = fields.CharField(max_length=100, default="")
    # Seed 001: a login for e-mail + password accounts, shown as typed and
    # unique case-insensitively through login_key (its lower-case form).
    login = fields.CharField(max_length=64, null=True)
    login_key = fields.CharField(max_length=LOGIN_KEY_LENGTH, null=True, unique=True)
    # argon2id(HMAC-SHA256(pepper, password)); the pepper is never stored.
    password_hash = fields.CharField(max_length=255, null=True)
    # A media id (an image the user uploaded); anyone signed in may fetch it.
    avatar_media_id = fields.UUIDField(null=True)
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
    user_id: uuid.UUID
    # phone | email | ethereum | substrate | oidc
    kind = fields.CharField(max_length=16)
    # Normalized, the uniqueness key: E.164 for phones, lower case for e-mail
    # and Ethereum addresses, the hex public key for Substrate accounts,
    # ``issuer|sub`` for OpenID Connect.
    value = fields.CharField(max_length=IDENTITY_VALUE_LENGTH)
    # As the person knows it: EIP-55 address, SS58 address, e-mail as typed.
    display = fields.CharField(max_length=255, default="")
    verified_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "identities"
        unique_together = (("kind", "value"),)


class ActionToken(Model):
    """A single-use e-mailed link: verify an address, or reset a password (seeds 003, 004)."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="action_tokens", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID
    # verify_email | reset_password
    purpose = fields.CharField(max_length=16)
    token_hash = fields.CharField(max_length=64, unique=True)
    # The address being verified (normalized) and as typed.
    email = fields.CharField(max_length=255, null=True)
    email_display = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "action_tokens"


class WalletChallenge(Model):
    """Seed 004's auth_pk_challenge: a message to sign, single use, expiring."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    nonce = fields.CharField(max_length=64, unique=True)
    # ethereum | substrate
    chain = fields.CharField(max_length=16)
    # The identity value the signature must prove (see Identity.value) and its display form.
    address = fields.CharField(max_length=128)
    display = fields.CharField(max_length=128)
    message = fields.TextField()
    # sign_in | link (link challenges belong to the signed-in user)
    purpose = fields.CharField(max_length=16)
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="wallet_challenges", null=True, on_delete=fields.CASCADE
    )
    user_id: uuid.UUID | None
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(db_index=True)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "wallet_challenges"


class Session(Model):
    """A signed-in device. Its refresh tokens form one rotation family.

    ``refresh_hash`` is the SHA-256 of the one refresh token that is valid now;
    each refresh replaces it and files the old one as spent.
    """

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
    refresh_hash = fields.CharField(max_length=64, unique=True)

    class Meta:
        table = "sessions"


class Device(Model):
    """A device's public keys, certified by the server's CA (seed 000)."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    # Indexed: every encrypted send and every key lookup reads a user's devices.
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="devices", on_delete=fields.CASCADE, db_index=True
    )
    user_id: uuid.UUID
    session: fields.ForeignKeyNullableRelation[Session] = fields.ForeignKeyField(
        "parley.Session", related_name="devices", null=True, on_delete=fields.SET_NULL
    )
    name = fields.CharField(max_length=128, default="")
    # Raw 32-byte public keys, base64url without padding.
    signing_key = fields.CharField(max_length=64, unique=True)
    agreement_key = fields.CharField(max_length=64)
    # The device's signature binding both keys to the user (crypto/devices.py):
    # kept so anyone fetching the keys can check the agreement key too.
    proof = fields.CharField(max_length=128)
    reg_timestamp = fields.BigIntField()
    reg_sign = fields.CharField(max_length=128)
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "devices"


class SpentRefreshToken(Model):
    """A refresh token already exchanged. Presented again, it was stolen or replayed."""

    # SHA-256 of the token; the token itself is never stored.
    token_hash = fields.CharField(max_length=64, primary_key=True)
    session: fields.ForeignKeyRelation[Session] = fields.ForeignKeyField(
        "parley.Session", related_name="spent_refresh_tokens", on_delete=fields.CASCADE
    )
    session_id: uuid.UUID
    spent_at = fields.DatetimeField()

    class Meta:
        table = "spent_refresh_tokens"


class Conversation(Model):
    """A chat. Seed 001: every chat is a conversation, and direct chats have two members."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    # direct | group
    kind = fields.CharField(max_length=16)
    # plaintext | encrypted; fixed at creation.
    mode = fields.CharField(max_length=16)
    # "<mode>:<smaller user id>:<larger user id>" for direct chats: one per
    # pair and mode (like a cloud chat and a secret chat between two people).
    direct_key = fields.CharField(max_length=100, unique=True, null=True)
    title = fields.CharField(max_length=128, default="")
    topic = fields.CharField(max_length=512, default="")
    # A media id (the media store keeps the image); None for no avatar.
    avatar_media_id = fields.UUIDField(null=True)
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
    # Highest seq this member's devices have received and read (receipts, unread counts).
    delivered_seq = fields.BigIntField(default=0)
    read_seq = fields.BigIntField(default=0)

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
    # text | image (plaintext conversations), envelope (encrypted ones), system
    kind = fields.CharField(max_length=16)
    body: fields.Field[Any] = fields.JSONField()
    # For edit and delete records: the message they change.
    target_id = fields.UUIDField(null=True, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    edited_at = fields.DatetimeField(null=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "messages"
        unique_together = (("conversation", "seq"), ("conversation", "sender", "client_msg_id"))


class Media(Model):
    """An uploaded image (its processed variants) or an opaque encrypted blob."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="media", on_delete=fields.CASCADE
    )
    owner_id: uuid.UUID
    # image (processed by the server) | blob (end-to-end encrypted, opaque)
    kind = fields.CharField(max_length=16)
    # Format sniffed from the upload (jpeg, png, webp, gif, heic, avif), blank for blobs.
    source_format = fields.CharField(max_length=8, default="")
    # Upright size of the full variant, and whether it is animated.
    width = fields.IntField(default=0)
    height = fields.IntField(default=0)
    animated = fields.BooleanField(default=False)
    # ThumbHash (base64) for the UI to paint before the thumbnail arrives.
    placeholder = fields.CharField(max_length=64, default="")
    # Bytes stored for it, all variants together: what counts against the quota.
    bytes = fields.BigIntField(default=0)
    # Set once it is an avatar: then anyone signed in may fetch it.
    public = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "media"


class MediaVariant(Model):
    """One stored rendition of a media item, addressed by the SHA-256 of its bytes."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    media: fields.ForeignKeyRelation[Media] = fields.ForeignKeyField(
        "parley.Media", related_name="variants", on_delete=fields.CASCADE
    )
    media_id: uuid.UUID
    # full.webp, full.jpg, 640.webp, ..., or blob
    name = fields.CharField(max_length=16)
    key = fields.CharField(max_length=64, db_index=True)
    content_type = fields.CharField(max_length=32)
    width = fields.IntField(default=0)
    height = fields.IntField(default=0)
    bytes = fields.BigIntField()

    class Meta:
        table = "media_variants"
        unique_together = (("media", "name"),)


class MediaUse(Model):
    """A conversation a media item was posted in (or uploaded for): its members may fetch it."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    media: fields.ForeignKeyRelation[Media] = fields.ForeignKeyField(
        "parley.Media", related_name="uses", on_delete=fields.CASCADE
    )
    media_id: uuid.UUID
    conversation: fields.ForeignKeyRelation[Conversation] = fields.ForeignKeyField(
        "parley.Conversation", related_name="media_uses", on_delete=fields.CASCADE
    )
    conversation_id: uuid.UUID
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "media_uses"
        unique_together = (("media", "conversation"),)


class Profile(Model):
    """What others may see of a user beyond the names: age, gender, interests, status."""

    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "parley.User", related_name="profile", on_delete=fields.CASCADE, primary_key=True
    )
    user_id: uuid.UUID
    age = fields.IntField(null=True)
    # "" (not said), female, male, nonbinary, other
    gender = fields.CharField(max_length=16, default="")
    # Slugs from the catalogue (server/people/interests.py).
    interests: fields.Field[Any] = fields.JSONField(default=list)
    # Who may find this user in people search: everyone, contacts (people whose
    # number is in this user's address book), nobody.
    visibility = fields.CharField(max_length=16, default="everyone")
    # Seed 002's status ("party mode"): a state, a short text, an optional expiry.
    status_state = fields.CharField(max_length=16, default="")
    status_text = fields.CharField(max_length=140, default="")
    status_expires_at = fields.DatetimeField(null=True)
    status_updated_at = fields.DatetimeField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "profiles"


class StatusChange(Model):
    """One status change, kept for the contacts' update feed."""

    id = fields.BigIntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="status_changes", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID
    state = fields.CharField(max_length=16)
    text = fields.CharField(max_length=140, default="")
    expires_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "status_changes"
        indexes = (("user_id", "id"),)


class Contact(Model):
    """A number in a user's address book, kept only as HMAC-SHA256(server secret, E.164)."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="address_book", on_delete=fields.CASCADE
    )
    owner_id: uuid.UUID
    phone_hash = fields.CharField(max_length=64, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "contacts"
        unique_together = (("owner", "phone_hash"),)


class PhoneDirectory(Model):
    """Keyed hashes of verified phone numbers, for matching address books in one query."""

    phone_hash = fields.CharField(max_length=64, primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="phone_hashes", on_delete=fields.CASCADE
    )
    user_id: uuid.UUID

    class Meta:
        table = "phone_directory"


class UserContact(Model):
    """Seed 002's user_contact: the owner's address book holds a number of ``contact``."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="contacts_out", on_delete=fields.CASCADE
    )
    owner_id: uuid.UUID
    contact: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="contacts_in", on_delete=fields.CASCADE, db_index=True
    )
    contact_id: uuid.UUID
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "user_contacts"
        unique_together = (("owner", "contact"),)


class Block(Model):
    """``blocker`` no longer receives chat requests or direct messages from ``blocked``."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    blocker: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="blocks_made", on_delete=fields.CASCADE
    )
    blocker_id: uuid.UUID
    blocked: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="blocks_received", on_delete=fields.CASCADE, db_index=True
    )
    blocked_id: uuid.UUID
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "blocks"
        unique_together = (("blocker", "blocked"),)


class ChatRequest(Model):
    """Seed 003: a request to chat. Accepting it opens a direct conversation."""

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    sender: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="chat_requests_sent", on_delete=fields.CASCADE
    )
    sender_id: uuid.UUID
    recipient: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="chat_requests_received", on_delete=fields.CASCADE
    )
    recipient_id: uuid.UUID
    text = fields.CharField(max_length=500, default="")
    # The mode of the direct conversation an acceptance opens.
    mode = fields.CharField(max_length=16, default="encrypted")
    # pending | accepted | declined | cancelled
    state = fields.CharField(max_length=16, default="pending")
    conversation_id = fields.UUIDField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "chat_requests"
        indexes = (("recipient_id", "state"), ("sender_id", "state"))


class Event(Model):
    """The outbox (seed 000's log): written in the transaction of the change it records.

    The indexer applies events in id order to the search index and the
    contact matches, and records how far it got in ``indexer_state``.
    """

    id = fields.BigIntField(primary_key=True)
    # person | message | phone
    kind = fields.CharField(max_length=16)
    payload: fields.Field[Any] = fields.JSONField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "events"


class IndexerState(Model):
    """How far a consumer of the outbox has got."""

    name = fields.CharField(max_length=32, primary_key=True)
    position = fields.BigIntField(default=0)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "indexer_state"


class Tip(Model):
    """Seed 003: an ETH transfer from one user's wallet to another's, prepared here.

    Amounts are exact integers of wei kept as decimal strings (a wei amount
    overflows a 64-bit column). The state moves forward only: prepared, then
    submitted (broadcast), mined (in a block), confirmed; or failed
    (reverted, or not the transaction that was prepared), dropped (never
    mined, or its nonce was used by another transaction), expired (never
    submitted), cancelled (by the sender before submitting).
    """

    id = fields.UUIDField(primary_key=True, default=uuid.uuid4)
    sender: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="tips_sent", on_delete=fields.CASCADE
    )
    sender_id: uuid.UUID
    recipient: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "parley.User", related_name="tips_received", on_delete=fields.CASCADE
    )
    recipient_id: uuid.UUID
    # Where the notice goes once confirmed; None for a tip outside any chat.
    conversation_id = fields.UUIDField(null=True)
    chain_id = fields.BigIntField()
    # Lower-case hex addresses.
    from_address = fields.CharField(max_length=42)
    to_address = fields.CharField(max_length=42)
    amount_eth = fields.CharField(max_length=40)
    value_wei = fields.CharField(max_length=40)
    # As prepared, then as signed (a wallet may change the nonce and the fees).
    nonce = fields.BigIntField()
    gas_limit = fields.BigIntField()
    max_fee_per_gas = fields.CharField(max_length=40)
    max_priority_fee_per_gas = fields.CharField(max_length=40)
    state = fields.CharField(max_length=16, default="prepared")
    tx_hash = fields.CharField(max_length=66, null=True, unique=True)
    # False while only the hash is known and the node has not shown the transaction yet.
    verified = fields.BooleanField(default=False)
    block_number = fields.BigIntField(null=True)
    confirmations = fields.IntField(default=0)
    # Why a tip failed or was dropped, in words.
    reason = fields.CharField(max_length=200, default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    submitted_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField()

    class Meta:
        table = "tips"
        indexes = (
            ("state", "updated_at"),
            ("sender_id", "created_at"),
            ("recipient_id", "created_at"),
        )
