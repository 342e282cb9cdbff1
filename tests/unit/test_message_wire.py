"""``MessageOut.wire``: the socket form of a message, made once and equal to pydantic's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from server.chats.schemas import MessageOut


def _message(kind: str, body: dict[str, Any]) -> MessageOut:
    return MessageOut.model_construct(
        id="3b0f4a4e-1111-4c1e-9f00-000000000001",
        conversation_id="3b0f4a4e-1111-4c1e-9f00-000000000002",
        seq=7,
        sender_id="3b0f4a4e-1111-4c1e-9f00-000000000003",
        client_msg_id="m-1",
        kind=kind,
        body=body,
        created_at=datetime(2026, 11, 22, 1, 2, 3, 456789, tzinfo=UTC),
        edited_at=None,
        deleted_at=None,
    )


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("envelope", {"v": 1, "recipients": [{"device_id": "d", "nonce": "n"}], "nonce": "x"}),
        ("text", {"text": "hello"}),
        ("system", {"event": "member_added", "user_ids": ["u"]}),
    ],
)
def test_wire_is_the_same_json_as_model_dump(kind: str, body: dict[str, Any]) -> None:
    message = _message(kind, body)
    assert orjson.dumps(message.wire()) == orjson.dumps(message.model_dump(mode="json"))


def test_wire_is_made_once() -> None:
    message = _message("envelope", {"v": 1})
    assert message.wire() is message.wire()
