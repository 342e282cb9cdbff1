"""Summarize a py-spy raw profile of a node under the fan-out load.

    .venv/bin/python -m bench.fanout.profile bench/results/fanout-profile-w1-m10-r200.txt

Prints where the samples go: by the package of the innermost frame (self time),
by step of the send path (each sample in the first step whose frames it holds),
and the hottest innermost frames.
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

# Steps of the work, first match wins (so they add up to 100%). py-spy's
# --nonblocking samples are sometimes cut short; a sample is put in the first
# step one of whose frames it holds.
STEPS = [
    ("event limiter (Redis token bucket per event)", ("limit_events", "KeyValueStore.take")),
    ("payload validation and ack encoding (pydantic)", ("model_validate", "model_dump")),
    (
        "persist: roster lookup and the INSERT (asyncpg, ORM)",
        (
            "fetch_one",
            "RosterCache",
            "asyncpg/",
            "tortoise/",
            "pypika",
        ),
    ),
    (
        "fan-out: socketio manager emit (a task per recipient socket, queue put)",
        (
            "_fan_out",
            "emit_to_users",
            "AsyncManager.emit",
            "_send_eio_packet",
            "AsyncSocket.send (",
            "AsyncServer.send_packet",
            "get_participants",
        ),
    ),
    (
        "per-socket writer: engine.io writer task, uvicorn frame + transport write",
        (
            "writer (engineio",
            "WebSocket.send (engineio",
            "WebSocketsSansIOProtocol.send (",
            "AsyncSocket.poll",
            "Frame.serialize",
        ),
    ),
    (
        "Redis pub/sub (publish, listener, decode)",
        (
            "AsyncPubSubManager",
            "AsyncRedisManager",
            "PushNotifications",
            "pubsub",
        ),
    ),
    (
        "Redis client, unattributed (the limiter's call or a publish; sample cut short)",
        ("redis/",),
    ),
    (
        "inbound: uvicorn frame parsing, engine.io reader loop",
        (
            "data_received",
            "handle_events",
            "handle_text",
            "_websocket_handler",
            "WebSocket.wait",
            "WebSocketsSansIOProtocol.receive",
        ),
    ),
    ("socket event dispatch (socketio, hub)", ("_handle_event", "_trigger_event", "dispatch")),
    ("metrics and logging", ("prometheus_client", "logging/")),
    (
        "periodic tasks (presence, sweeps, pings)",
        (
            "_presence_loop",
            "_slow_consumer_loop",
            "_sweep_sessions",
            "keepalive",
            "schedule_ping",
        ),
    ),
    (
        "asyncio plumbing, unattributed (wait_for, tasks, queues)",
        (
            "asyncio/tasks.py",
            "asyncio/queues.py",
            "asyncio/locks.py",
            "asyncio/streams.py",
            "asyncio/futures.py",
            "asyncio/events.py",
            "asyncio/base_events.py",
        ),
    ),
    ("event loop itself (uvloop C code, no Python frame)", ("Runner.run",)),
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
                break
        else:
            by_step["other"] += count
    print(f"{total} samples (non-idle)\n\nself time by package:")
    for name, count in by_package.most_common(16):
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nby step (first match):")
    for name, count in by_step.most_common():
        print(f"  {100 * count / total:5.1f}%  {name}")
    print("\nhottest innermost frames:")
    for name, count in by_leaf.most_common(15):
        print(f"  {100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main(sys.argv[1])
