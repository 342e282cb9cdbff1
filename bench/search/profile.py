"""Summarize py-spy raw profiles of the node's workers (``run.py --profile``).

    .venv/bin/python -m bench.search.profile bench/results/search-<stamp>-search-sequential-*.txt

Prints where the busy samples go: by step of the request (each sample in the first
step whose frame it holds, so they add up to 100 %), and by the package of
the innermost frame (self time).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# (label, a substring of a frame); the first that a sample holds wins.
STEPS = [
    ("contacts: normalize (phonenumbers, HMAC, in a thread or worker processes)", "normalize"),
    ("contacts: the book written, matched, related, cards read", "ContactService.store_book"),
    ("contacts: the rest of replace", "ContactService.replace"),
    ("auth: token and session check", "get_principal"),
    ("search: the searcher (blocks, who lists me, profile)", "searcher (server/search"),
    ("search: the index (transaction, tiers)", "PostgresSearchIndex"),
    ("search: 20 cards (one query)", "profile_cards"),
    ("search: rest of SearchService.people", "SearchService.people"),
    ("response: validation and JSON", "serialize_response"),
]

PACKAGES = [
    ("tortoise/", "tortoise-orm"),
    ("pypika", "pypika (SQL building)"),
    ("asyncpg/", "asyncpg"),
    ("phonenumbers/", "phonenumbers"),
    ("pydantic", "pydantic"),
    ("starlette/", "starlette/fastapi"),
    ("fastapi/", "starlette/fastapi"),
    ("uvicorn/", "uvicorn"),
    ("httptools", "uvicorn"),
    ("jwt/", "PyJWT"),
    ("cryptography/", "cryptography"),
    ("redis/", "redis-py"),
    ("asyncio/", "asyncio"),
    ("logging/", "logging"),
    ("hmac.py", "hmac/hashlib"),
    ("server/", "parley"),
    ("storage/", "parley"),
    ("config/", "parley"),
    ("realtime/", "parley"),
]


def read(paths: list[Path]) -> list[tuple[list[str], int]]:
    samples = []
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                samples.append((stack.split(";"), int(count)))
    return samples


# py-spy cannot see into the C of epoll_wait: a sample whose innermost
# Python frame is the event loop's own is the worker waiting for work.
WAITING = ("Runner.run (", "BaseEventLoop.run_forever (", "BaseEventLoop._run_once (")
# uvicorn's supervisor pings each worker over a pipe; its thread mostly waits in recv.
PING_THREAD = "Process.pong ("


def _waiting(frames: list[str]) -> bool:
    return frames[-1].startswith(WAITING) or any(f.startswith(PING_THREAD) for f in frames)


def summarize(samples: list[tuple[list[str], int]]) -> str:
    waiting = sum(n for frames, n in samples if _waiting(frames))
    busy = [(f, n) for f, n in samples if not _waiting(f)]
    total = sum(n for _, n in busy) or 1
    steps: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    for frames, n in busy:
        joined = ";".join(frames)
        label = next((lbl for lbl, needle in STEPS if needle in joined), "framework and the rest")
        if label.startswith("contacts: cards") and "ContactService" not in joined:
            label = "search: 20 cards (2 queries)"
        steps[label] += n
        inner = frames[-1]
        packages[next((p for needle, p in PACKAGES if needle in inner), "other")] += n
    lines = [
        f"{total} busy samples ({waiting} more waiting for work, left out)",
        "",
        "| step | share |",
        "| --- | ---: |",
    ]
    lines += [f"| {k} | {v / total:.0%} |" for k, v in steps.most_common()]
    lines += ["", "| innermost package | share |", "| --- | ---: |"]
    lines += [f"| {k} | {v / total:.0%} |" for k, v in packages.most_common()]
    return "\n".join(lines)


def main() -> None:
    print(summarize(read([Path(p) for p in sys.argv[1:]])))


if __name__ == "__main__":
    main()
