"""MemoryKeyValueStore, the embedded default key-value store.

The same behaviours run against Redis in the contract suite under tests/integration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from storage.kv import KeyValueStore, MemoryKeyValueStore

SHORT_TTL = 0.05
# Sleep well past SHORT_TTL so a busy machine does not make expiry tests flaky.
PAST_SHORT_TTL = 0.15
LONG_TTL = 60.0


@pytest.fixture
async def kv() -> AsyncIterator[MemoryKeyValueStore]:
    store = MemoryKeyValueStore()
    yield store
    await store.close()


def test_memory_store_satisfies_protocol() -> None:
    """MemoryKeyValueStore can be used wherever a KeyValueStore is expected."""
    store: KeyValueStore = MemoryKeyValueStore()
    assert store is not None


async def test_get_missing_key_is_none(kv: MemoryKeyValueStore) -> None:
    """Getting a key never set returns None."""
    assert await kv.get("missing") is None
    assert await kv.ttl("missing") is None


async def test_set_then_get(kv: MemoryKeyValueStore) -> None:
    """A value set is returned by get, byte for byte."""
    assert await kv.set("k", b"\x00value\xff", ttl=LONG_TTL) is True
    assert await kv.get("k") == b"\x00value\xff"


async def test_set_overwrites(kv: MemoryKeyValueStore) -> None:
    """A second plain set replaces the value."""
    await kv.set("k", b"one", ttl=LONG_TTL)
    assert await kv.set("k", b"two", ttl=LONG_TTL) is True
    assert await kv.get("k") == b"two"


async def test_keys_are_independent(kv: MemoryKeyValueStore) -> None:
    """Setting one key does not affect another."""
    await kv.set("a", b"1", ttl=LONG_TTL)
    await kv.set("b", b"2", ttl=LONG_TTL)
    assert await kv.get("a") == b"1"
    assert await kv.get("b") == b"2"


async def test_value_expires_after_ttl(kv: MemoryKeyValueStore) -> None:
    """A value is gone (get and ttl return None) once its TTL has passed."""
    await kv.set("k", b"v", ttl=SHORT_TTL)
    assert await kv.get("k") == b"v"
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await kv.get("k") is None
    assert await kv.ttl("k") is None


async def test_ttl_reports_remaining_seconds(kv: MemoryKeyValueStore) -> None:
    """ttl returns the seconds left, at most the TTL set and more than zero."""
    await kv.set("k", b"v", ttl=LONG_TTL)
    remaining = await kv.ttl("k")
    assert remaining is not None
    assert 0 < remaining <= LONG_TTL


async def test_only_if_absent_keeps_existing_value(kv: MemoryKeyValueStore) -> None:
    """set with only_if_absent returns False and keeps the value when the key exists."""
    assert await kv.set("k", b"first", ttl=LONG_TTL, only_if_absent=True) is True
    assert await kv.set("k", b"second", ttl=LONG_TTL, only_if_absent=True) is False
    assert await kv.get("k") == b"first"


async def test_only_if_absent_after_expiry_succeeds(kv: MemoryKeyValueStore) -> None:
    """set with only_if_absent succeeds once the previous value has expired."""
    await kv.set("k", b"old", ttl=SHORT_TTL)
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await kv.set("k", b"new", ttl=LONG_TTL, only_if_absent=True) is True
    assert await kv.get("k") == b"new"


async def test_delete_returns_true_once(kv: MemoryKeyValueStore) -> None:
    """delete returns True for the call that removed the key, then False."""
    await kv.set("k", b"v", ttl=LONG_TTL)
    assert await kv.delete("k") is True
    assert await kv.delete("k") is False
    assert await kv.get("k") is None


async def test_delete_missing_or_expired_is_false(kv: MemoryKeyValueStore) -> None:
    """delete of a missing or already expired key returns False."""
    assert await kv.delete("never") is False
    await kv.set("k", b"v", ttl=SHORT_TTL)
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await kv.delete("k") is False


async def test_concurrent_deletes_have_one_winner(kv: MemoryKeyValueStore) -> None:
    """Of many concurrent deletes of one key exactly one returns True (single-use codes)."""
    await kv.set("k", b"v", ttl=LONG_TTL)
    results = await asyncio.gather(*(kv.delete("k") for _ in range(20)))
    assert results.count(True) == 1


async def test_incr_counts_from_one(kv: MemoryKeyValueStore) -> None:
    """incr on a new key returns 1, then 2, 3, and get sees the count as ASCII digits."""
    assert [await kv.incr("n", ttl=LONG_TTL) for _ in range(3)] == [1, 2, 3]
    assert await kv.get("n") == b"3"


async def test_incr_keeps_the_first_ttl(kv: MemoryKeyValueStore) -> None:
    """Later increments do not extend the TTL set by the first one (fixed rate-limit window)."""
    assert await kv.incr("n", ttl=SHORT_TTL) == 1
    assert await kv.incr("n", ttl=LONG_TTL) == 2
    remaining = await kv.ttl("n")
    assert remaining is not None
    assert remaining <= SHORT_TTL
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await kv.get("n") is None


async def test_incr_restarts_after_expiry(kv: MemoryKeyValueStore) -> None:
    """Once the window has expired the count starts again at 1."""
    await kv.incr("n", ttl=SHORT_TTL)
    await kv.incr("n", ttl=SHORT_TTL)
    await asyncio.sleep(PAST_SHORT_TTL)
    assert await kv.incr("n", ttl=LONG_TTL) == 1


async def test_many_expired_writes_are_swept(kv: MemoryKeyValueStore) -> None:
    """Keys nobody reads again are dropped by the periodic sweep instead of piling up."""
    for i in range(100):
        await kv.set(f"old-{i}", b"v", ttl=SHORT_TTL)
    await asyncio.sleep(PAST_SHORT_TTL)
    for i in range(2048):
        await kv.set(f"new-{i}", b"v", ttl=LONG_TTL)
    assert not any(key.startswith("old-") for key in kv._data)


async def test_close_forgets_everything(kv: MemoryKeyValueStore) -> None:
    """After close the store holds no keys; ping never fails."""
    await kv.ping()
    await kv.set("k", b"v", ttl=LONG_TTL)
    await kv.close()
    assert await kv.get("k") is None
