"""The key-value contract, run against the in-memory store and Redis alike."""

from __future__ import annotations

import asyncio

from storage.kv import KeyValueStore


async def test_set_get_and_missing(kv: KeyValueStore) -> None:
    """A stored value comes back; a missing key is None."""
    assert await kv.set("a", b"1", ttl=10)
    assert await kv.get("a") == b"1"
    assert await kv.get("missing") is None


async def test_values_expire(kv: KeyValueStore) -> None:
    """A value is gone after its TTL, and its ttl() shrinks meanwhile."""
    await kv.set("short", b"x", ttl=0.2)
    left = await kv.ttl("short")
    assert left is not None and 0 < left <= 0.2
    await asyncio.sleep(0.3)
    assert await kv.get("short") is None
    assert await kv.ttl("short") is None


async def test_only_if_absent_keeps_the_first(kv: KeyValueStore) -> None:
    """only_if_absent refuses to overwrite a live key but writes an expired one."""
    assert await kv.set("k", b"first", ttl=0.2, only_if_absent=True)
    assert not await kv.set("k", b"second", ttl=10, only_if_absent=True)
    assert await kv.get("k") == b"first"
    await asyncio.sleep(0.3)
    assert await kv.set("k", b"third", ttl=10, only_if_absent=True)


async def test_delete_succeeds_once(kv: KeyValueStore) -> None:
    """Of two deletes of one key only the first reports it removed something."""
    await kv.set("d", b"1", ttl=10)
    results = await asyncio.gather(kv.delete("d"), kv.delete("d"))
    assert sorted(results) == [False, True]


async def test_incr_counts_atomically_and_keeps_first_ttl(kv: KeyValueStore) -> None:
    """50 concurrent increments count to 50; later increments do not extend the TTL."""
    counts = await asyncio.gather(*(kv.incr("n", ttl=0.5) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))
    first_ttl = await kv.ttl("n")
    await asyncio.sleep(0.1)
    await kv.incr("n", ttl=100)
    later = await kv.ttl("n")
    assert first_ttl is not None and later is not None and later < first_ttl
    await asyncio.sleep(0.5)
    assert await kv.incr("n", ttl=1) == 1


async def test_ping(kv: KeyValueStore) -> None:
    """A reachable store answers ping."""
    await kv.ping()


async def test_token_bucket_allows_a_burst_then_the_rate(kv: KeyValueStore) -> None:
    """A bucket of 5 at 20/s gives 5 at once, then refuses with the wait, then refills."""
    waits = [await kv.take("bucket", rate=20, burst=5) for _ in range(6)]
    assert waits[:5] == [0.0] * 5
    assert 0 < waits[5] <= 0.05 + 0.01
    await asyncio.sleep(waits[5] + 0.02)
    assert await kv.take("bucket", rate=20, burst=5) == 0.0
    assert await kv.take("other", rate=20, burst=5) == 0.0, "buckets are separate"


async def test_concurrent_takes_share_buckets_exactly(kv: KeyValueStore) -> None:
    """Takes that arrive together (Redis answers them in one call) still count one each.

    30 at once from a bucket of 5 grant exactly 5; two buckets with different
    rates in the same burst keep their own limits and their own waits.
    """
    waits = await asyncio.gather(*(kv.take("together", rate=1, burst=5) for _ in range(30)))
    assert sorted(waits)[:5] == [0.0] * 5
    assert all(w > 0.5 for w in sorted(waits)[5:]), "the rest wait about a second"

    mixed = await asyncio.gather(
        *(kv.take("slow", rate=0.5, burst=2) for _ in range(4)),
        *(kv.take("fast", rate=100, burst=3) for _ in range(4)),
    )
    slow, fast = sorted(mixed[:4]), sorted(mixed[4:])
    assert slow[:2] == [0.0, 0.0] and slow[2] > 1.5, slow
    assert fast[:3] == [0.0] * 3 and 0 < fast[3] <= 0.02, fast
