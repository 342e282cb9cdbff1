"""The measured HTTP scenarios: people search and address-book uploads, as clients make them."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import aiohttp

from bench.search.client import Account, Request, fire, sign_in, update_profile
from bench.search.cpu import CpuMeter, Profiler
from bench.search.people import PeopleGenerator
from bench.search.queries import Query, QueryMix
from bench.search.stats import summary
from tests.support.server import ServerProcess


def search_request(query: Query, account: Account) -> Request:
    """The search; tagged ``<kind>+profile`` when the searcher's profile interests apply."""
    profile = not query.interests and account.interests
    tag = f"{query.kind}+profile" if profile else query.kind
    return Request("GET", "/v1/users/search", account.headers, params=query.params(), tag=tag)


async def make_searchers(
    session: aiohttp.ClientSession, node: ServerProcess, n: int, generator: PeopleGenerator
) -> list[Account]:
    """Sign in ``n`` searchers and name them; every other one lists three interests."""
    searchers = []
    for i, account in enumerate(await sign_in(session, node, n)):
        person = generator.person()
        interests = tuple(sorted({generator.interest() for _ in range(6)}))[:3] if i % 2 else ()
        change: dict[str, Any] = {"first_name": person.first_name, "last_name": person.last_name}
        if interests:
            change["interests"] = list(interests)
        await update_profile(session, account, change)
        searchers.append(dataclasses.replace(account, interests=interests))
    return searchers


async def search_http(
    session: aiohttp.ClientSession,
    searchers: list[Account],
    mix: QueryMix,
    n: int,
    concurrency: int,
    meter: CpuMeter,
    profiler: Profiler | None,
) -> dict[str, Any]:
    warm = mix.draw(max(100, n // 10))
    await fire(session, [search_request(q, searchers[0]) for q in warm], concurrency, keep=False)
    out: dict[str, Any] = {}
    for name, in_flight in (("sequential", 1), ("concurrent", concurrency)):
        queries = mix.draw(n)
        requests = [search_request(q, searchers[i % len(searchers)]) for i, q in enumerate(queries)]
        if profiler is not None:
            profiler.start(f"search-{name}")
        await meter.start()
        outcome = await fire(session, requests, in_flight, keep=True)
        cpu = await meter.stop()
        if profiler is not None:
            profiler.stop()
        if outcome.errors:
            raise SystemExit(f"{len(outcome.errors)} searches failed, e.g. {outcome.errors[0]}")
        by_kind: dict[str, Any] = {}
        for kind in sorted(set(outcome.tags)):
            picked = [i for i, t in enumerate(outcome.tags) if t == kind]
            hits = sorted(len(outcome.bodies[i]["people"]) for i in picked)
            by_kind[kind] = summary([outcome.seconds[i] for i in picked]) | {
                "median_hits": hits[len(hits) // 2] if hits else 0
            }
        # Whether the route ranked name-only searches by the searcher's profile interests.
        profile_used = any(
            (person.get("shared_interests") or 0) > 0
            for body, tag in zip(outcome.bodies, outcome.tags, strict=True)
            if tag.endswith("+profile")
            for person in body["people"]
        )
        out[name] = {
            "in_flight": in_flight,
            "all": summary(outcome.seconds),
            "per_s": round(n / outcome.wall, 1),
            "by_kind": by_kind,
            "profile_interests_used": profile_used,
            "cpu_ms_per_request": {k: round(v * 1000 / n, 2) for k, v in cpu.items()},
        }
        print(f"  search {name} ({in_flight} in flight): {out[name]['all']}", flush=True)
    return out


def check_matches(outcome_bodies: list[Any], book: int, expected: list[int]) -> None:
    for body, want in zip(outcome_bodies, expected, strict=True):
        if body["stored"] != book or body["invalid"] or len(body["matches"]) != want:
            raise SystemExit(
                f"unexpected match result: stored {body['stored']} of {book}, "
                f"{len(body['invalid'])} invalid, {len(body['matches'])} matches of {want}"
            )


async def matching_http(
    session: aiohttp.ClientSession,
    owners: list[Account],
    books: list[tuple[list[str], int]],
    runs: int,
    size: int,
    meter: CpuMeter,
    profiler: Profiler | None,
) -> dict[str, Any]:
    def put(owner: Account, book: list[str], tag: str) -> Request:
        return Request(
            "PUT", "/v1/contacts", owner.headers, json={"numbers": book, "region": "GB"}, tag=tag
        )

    if profiler is not None:
        profiler.start("contacts-first")
    await meter.start()
    first = await fire(
        session, [put(o, b, "first") for o, (b, _) in zip(owners, books, strict=True)], 1, keep=True
    )
    first_cpu = await meter.stop()
    if profiler is not None:
        profiler.stop()
    check_matches(first.bodies, size, [hits for _, hits in books])
    print(f"  PUT /v1/contacts, first upload: {summary(first.seconds)}", flush=True)
    await meter.start()
    again = await fire(session, [put(owners[0], books[0][0], "replace")] * runs, 1, keep=True)
    again_cpu = await meter.stop()
    check_matches(again.bodies, size, [books[0][1]] * runs)
    print(f"  PUT /v1/contacts, same book again: {summary(again.seconds)}", flush=True)

    def per_upload(cpu: dict[str, float], n: int) -> dict[str, float]:
        return {k: round(v * 1000 / n, 1) for k, v in cpu.items()}

    return {
        "first_upload": summary(first.seconds)
        | {
            "runs_ms": [round(s * 1000) for s in first.seconds],
            "cpu_ms_per_request": per_upload(first_cpu, len(first.seconds)),
        },
        "replace_same_book": summary(again.seconds)
        | {
            "runs_ms": [round(s * 1000) for s in again.seconds],
            "cpu_ms_per_request": per_upload(again_cpu, runs),
        },
        "matches_per_book": books[0][1],
    }


async def search_during_uploads(
    session: aiohttp.ClientSession,
    searchers: list[Account],
    owner: Account,
    book: list[str],
    mix: QueryMix,
    n: int,
    concurrency: int,
) -> dict[str, Any]:
    """Searches while one owner re-uploads its book back to back (the node's loop is shared)."""
    stop = asyncio.Event()
    uploads: list[float] = []

    async def upload() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            async with session.put(
                "/v1/contacts", headers=owner.headers, json={"numbers": book, "region": "GB"}
            ) as response:
                await response.read()
            uploads.append(time.perf_counter() - started)

    uploader = asyncio.create_task(upload())
    await asyncio.sleep(0.5)
    requests = [search_request(q, searchers[i % len(searchers)]) for i, q in enumerate(mix.draw(n))]
    outcome = await fire(session, requests, concurrency, keep=False)
    stop.set()
    await uploader
    result = {"search": summary(outcome.seconds), "uploads": summary(uploads)}
    print(f"  search during uploads: {result}", flush=True)
    return result
