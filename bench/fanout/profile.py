"""Summarize a py-spy raw profile of a node under the fan-out load.

    .venv/bin/python -m bench.fanout.profile bench/results/fanout-profile-w1-m10-r200.txt

Prints where the samples go twice: by the package of the innermost frame (self
time), and by step of the send path (inclusive: a sample counts for every step
on its stack, so the steps can add up past 100%).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# Innermost frame's file -> package.
PACKAGES = [
    ("tortoise/", "tortoise-orm"),
    ("pypika", "pypika (SQL building)"),
    ("asyncpg/", "asyncpg"),
    ("redis/", "redis-py"),
    ("socketio/", "python-socketio"),
    ("engineio/", "python-engineio"),
    ("uvicorn/", "uvicorn"),
    ("websockets/", "websockets"),
    ("pydantic", "pydantic"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("prometheus_client/", "prometheus_client"),
    ("asyncio/", "asyncio"),
    ("logging/", "logging"),
    ("server/", "parley"),
    ("realtime/", "parley"),
    ("storage/", "parley"),
    ("config/", "parley"),
    ("crypto/", "parley"),
]

# A step is on the stack when one of its frames is.
STEPS = [
    ("event limiter (Redis token bucket)", ("limit_events", "RedisKeyValueStore.take")),
    ("payload validation (pydantic)", ("model_validate",)),
    ("require_member (2 queries)", ("require_member",)),
    (
        "idempotency lookup (get_or_none)",
        (
            "MessageService.send (server/chats/messages.py:113)",
            "MessageService.send (server/chats/messages.py:114)",
        ),
    ),
    (
        "persist transaction (seq + insert)",
        (
            "MessageService.append (server/chats/messages.py:1",
            "in_transaction",
            "TransactionContext",
        ),
    ),
    ("fan-out member lookup", ("MessageService._fan_out (server/chats/messages.py:39",)),
    ("emit_to_users (socketio manager)", ("emit_to_users",)),
    (
        "Redis pub/sub publish/listen",
        (
            "AsyncRedisManager",
            "AsyncPubSubManager._publish",
            "AsyncPubSubManager._thread",
            "_redis_listen",
        ),
    ),
    (
        "engine.io socket writer (per-socket send)",
        ("AsyncSocket._websocket_handler.<locals>.writer", "AsyncSocket.send"),
    ),
    ("uvicorn websocket I/O", ("WebSocketsSansIOProtocol",)),
    ("message_out / model_dump", ("message_out", "model_dump")),
    ("metrics", ("prometheus_client",)),
    ("ORM (tortoise, all)", ("tortoise/",)),
    ("asyncpg (all)", ("asyncpg/",)),
]


def package(frame: str) -> str:
    where = frame[frame.rfind("(") + 1 :]
    for marker, name in PACKAGES:
        if marker in where:
            return name
    return "other: " + where.split(":")[0]


def main(path: str) -> None:
    by_package: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        by_package[package(frames[-1])] += count
        by_leaf[frames[-1]] += count
        for name, markers in STEPS:
            if any(m in stack for m in markers):
                by_step[name] += count
    print(f"{total} samples (non-idle)\n\nself time by package:")
    for name, count in by_package.most_common(16):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\ninclusive time by step (overlapping):")
    for name, count in by_step.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nhottest innermost frames:")
    for name, count in by_leaf.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
