"""The chat service on SQLite and PostgreSQL: seqs, idempotency, one direct chat per pair."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from config.errors import InvalidRequestError, NotFoundError
from config.settings import ChatSettings, DatabaseSettings
from server.chats.conversations import ConversationService
from server.chats.envelopes import EnvelopeChecker
from server.chats.messages import MessageService
from server.users.service import UserService
from storage import sql
from storage.models import Conversation, Event, Message
from tests.support.phones import fresh_phone


@dataclass
class Chat:
    conversations: ConversationService
    messages: MessageService


class RecordingEmitter:
    def __init__(self) -> None:
        self.emits: list[tuple[str, Any, list[str]]] = []

    async def emit_to_users(self, event: str, data: Any, user_ids: list[str]) -> None:
        self.emits.append((event, data, list(user_ids)))


async def _user(users: UserService, name: str) -> str:
    user, _ = await users.sign_in_with_identity("phone", fresh_phone(), nickname=name)
    return str(user.id)


@pytest.fixture
async def chats(db: DatabaseSettings) -> tuple[Chat, UserService, RecordingEmitter]:
    users = UserService()
    emitter = RecordingEmitter()
    settings = ChatSettings(max_text_chars=100)
    messages = MessageService(settings, emitter, EnvelopeChecker())
    return Chat(ConversationService(settings, users, messages), messages), users, emitter


async def test_concurrent_sends_get_gap_free_seqs(
    chats: tuple[Chat, UserService, RecordingEmitter],
) -> None:
    """30 concurrent sends get seqs 1..30 exactly once, each fanned out to both members."""
    service, users, emitter = chats
    a, b = await _user(users, "a"), await _user(users, "b")
    conversation = await service.conversations.open_direct(a, b, "plaintext")
    results = await asyncio.gather(
        *(
            service.messages.send(a, conversation.id, f"c{i}", "text", {"text": f"m{i}"})
            for i in range(30)
        )
    )
    assert sorted(m.seq for m in results) == list(range(1, 31))
    assert len(emitter.emits) == 30
    assert all(sorted(e[2]) == sorted([a, b]) for e in emitter.emits)
    assert (await service.conversations.get(b, conversation.id)).last_seq == 30


async def test_same_client_msg_id_stored_once(
    chats: tuple[Chat, UserService, RecordingEmitter],
) -> None:
    """Ten concurrent sends with one client_msg_id store one message and fan out once."""
    service, users, emitter = chats
    a, b = await _user(users, "a"), await _user(users, "b")
    conversation = await service.conversations.open_direct(a, b, "plaintext")
    results = await asyncio.gather(
        *(
            service.messages.send(a, conversation.id, "same", "text", {"text": "x"})
            for _ in range(10)
        )
    )
    assert {m.id for m in results} == {results[0].id}
    assert await Message.filter(conversation_id=conversation.id).count() == 1
    assert len(emitter.emits) == 1
    nxt = await service.messages.send(a, conversation.id, "next", "text", {"text": "y"})
    assert nxt.seq == 2, "a deduplicated resend leaves no gap"


async def test_sends_stored_together_keep_every_rule(
    chats: tuple[Chat, UserService, RecordingEmitter],
    db: DatabaseSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Concurrent sends to several conversations, with resends and a vanished conversation.

    On PostgreSQL sends that arrive together are stored by one statement; each
    conversation still gets seqs 1..n once, a resend gets the first ack, a
    searchable message gets exactly one outbox event, and a send to a deleted
    conversation fails alone.
    """
    service, users, emitter = chats
    people = [await _user(users, f"p{i}") for i in range(4)]
    plain = await service.conversations.open_direct(people[0], people[1], "plaintext")
    other = await service.conversations.open_direct(people[2], people[3], "plaintext")
    doomed = await service.conversations.open_direct(people[0], people[2], "plaintext")
    await Conversation.filter(id=doomed.id).delete()

    statements: list[int] = []
    real_fetch = sql.fetch

    async def counting_fetch(statement: str, params: Any, **kw: Any) -> Any:
        if "WITH ORDINALITY" in statement:
            statements.append(len(params[0]))
        return await real_fetch(statement, params, **kw)

    monkeypatch.setattr(sql, "fetch", counting_fetch)
    sends = []
    for i in range(40):
        sends.append(service.messages.send(people[0], plain.id, f"a{i}", "text", {"text": f"{i}"}))
        sends.append(service.messages.send(people[3], other.id, f"b{i}", "text", {"text": f"{i}"}))
        if i % 10 == 0:
            sends.append(
                service.messages.send(people[0], plain.id, "a0", "text", {"text": "resend"})
            )
    sends.append(service.messages.send(people[0], doomed.id, "lost", "text", {"text": "x"}))
    results = await asyncio.gather(*sends, return_exceptions=True)

    lost = results.pop()
    assert isinstance(lost, NotFoundError), lost
    assert not [r for r in results if isinstance(r, BaseException)], results
    for conversation, prefix in ((plain, "a"), (other, "b")):
        stored = await Message.filter(conversation_id=conversation.id).order_by("seq")
        assert [m.seq for m in stored] == list(range(1, 41)), "gap-free, each once"
        assert sorted(m.client_msg_id for m in stored) == sorted(f"{prefix}{i}" for i in range(40))
    resends = [r for r in results if not isinstance(r, BaseException) and r.client_msg_id == "a0"]
    assert len({r.id for r in resends}) == 1 and len(resends) == 5, "resends get the first ack"
    assert len(emitter.emits) == 80, "every message fanned out once, resends not at all"
    stored_ids = {
        str(m)
        for m in await Message.filter(conversation_id__in=[plain.id, other.id]).values_list(
            "id", flat=True
        )
    }
    events = await Event.filter(kind="message").values_list("payload", flat=True)
    ours = [e["message_id"] for e in events if e["message_id"] in stored_ids]
    assert sorted(ours) == sorted(stored_ids), "one outbox event per stored message"
    if sql.is_postgres():
        assert statements and max(statements) > 1, "sends that arrived together were batched"
    else:
        assert statements == []


async def test_one_direct_conversation_per_pair(
    chats: tuple[Chat, UserService, RecordingEmitter],
) -> None:
    """Both people opening their direct chat at once get the same conversation."""
    service, users, _ = chats
    a, b = await _user(users, "a"), await _user(users, "b")
    opened = await asyncio.gather(
        *(service.conversations.open_direct(a, b, "plaintext") for _ in range(5)),
        *(service.conversations.open_direct(b, a, "plaintext") for _ in range(5)),
    )
    assert len({c.id for c in opened}) == 1


async def test_rules_of_the_door(chats: tuple[Chat, UserService, RecordingEmitter]) -> None:
    """Self-chats, unknown users, outsiders and oversize text are refused without writing."""
    service, users, emitter = chats
    a, b, eve = await _user(users, "a"), await _user(users, "b"), await _user(users, "eve")
    with pytest.raises(InvalidRequestError):
        await service.conversations.open_direct(a, a, "plaintext")
    with pytest.raises(NotFoundError):
        await service.conversations.open_direct(
            a, "00000000-0000-4000-8000-000000000000", "plaintext"
        )
    conversation = await service.conversations.open_direct(a, b, "plaintext")
    with pytest.raises(NotFoundError):
        await service.messages.send(eve, conversation.id, "x", "text", {"text": "hi"})
    with pytest.raises(NotFoundError):
        await service.messages.history(
            eve, conversation.id, before_seq=None, after_seq=None, limit=10
        )
    with pytest.raises(InvalidRequestError):
        await service.messages.send(a, conversation.id, "y", "text", {"text": "z" * 101})
    assert await Message.filter(conversation_id=conversation.id).count() == 0
    assert emitter.emits == []


async def test_sign_in_creates_once_and_overwrites_nickname(db: DatabaseSettings) -> None:
    """The same phone signs in to the same user; concurrent first sign-ins create one user."""
    users = UserService()
    phone = fresh_phone()
    results = await asyncio.gather(
        *(users.sign_in_with_identity("phone", phone, nickname="x") for _ in range(5))
    )
    assert len({str(u.id) for u, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    user, created = await users.sign_in_with_identity("phone", phone, nickname="renamed")
    assert not created and user.nickname == "renamed"
