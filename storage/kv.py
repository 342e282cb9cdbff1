"""Key-value store with TTLs: OTPs, challenges, rate limits, presence.

One protocol, two backends: ``MemoryKeyValueStore`` (the embedded default, one
process) and ``RedisKeyValueStore`` (shared by every node). The contract suite
in tests/integration/test_kv_contract.py runs against both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import redis.asyncio as redis_asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config.errors import UnavailableError
from storage.batching import Batcher

# Connections one Redis client opens at most; past that, commands wait for one.
REDIS_POOL_SIZE = 64
# How long a command waits for a free connection before it fails.
REDIS_POOL_WAIT = 5.0


def redis_client(url: str, **options: object) -> redis_asyncio.Redis:
    """A Redis client whose commands wait for a pooled connection instead of failing.

    redis-py's default pool raises ``MaxConnectionsError`` as soon as more than
    100 commands are in flight at once, which a node under load reaches (each
    emit publishes): a burst would turn into errors. A blocking pool queues the
    burst on 64 connections and fails only after ``REDIS_POOL_WAIT`` seconds.
    """
    pool = redis_asyncio.BlockingConnectionPool.from_url(
        url, max_connections=REDIS_POOL_SIZE, timeout=REDIS_POOL_WAIT, **options
    )
    return redis_asyncio.Redis.from_pool(pool)  # closing the client closes the pool


class KeyValueStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        """Store ``value`` for ``ttl`` seconds; with ``only_if_absent`` keep an existing one."""

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True only for the caller that actually removed it."""

    async def incr(self, key: str, *, ttl: float) -> int:
        """Add one and return the new count; the TTL starts at the first increment."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None when the key does not exist."""

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        """Take a token from a bucket refilled at ``rate``/s up to ``burst``.

        0 when a token was taken; otherwise the seconds until one is available.
        """

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class MemoryKeyValueStore:
    """In-process store; expired keys vanish on access and in a periodic sweep."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._writes = 0

    def _now(self) -> float:
        return time.monotonic()

    def _live(self, key: str) -> tuple[bytes, float] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._now():
            del self._data[key]
            return None
        return item

    def _sweep(self) -> None:
        # Amortized clean-up so keys nobody reads again don't pile up.
        self._writes += 1
        if self._writes % 1024 == 0:
            now = self._now()
            for key in [k for k, (_, exp) in self._data.items() if exp <= now]:
                del self._data[key]

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self._data[key] = (value, self._now() + ttl)
        self._sweep()
        return True

    async def delete(self, key: str) -> bool:
        return self._live(key) is not None and self._data.pop(key, None) is not None

    async def incr(self, key: str, *, ttl: float) -> int:
        item = self._live(key)
        if item is None:
            self._data[key] = (b"1", self._now() + ttl)
            self._sweep()
            return 1
        count = int(item[0]) + 1
        self._data[key] = (str(count).encode(), item[1])
        return count

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        return None if item is None else item[1] - self._now()

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        now = self._now()
        tokens, updated = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - updated) * rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 100_000:
            # Full buckets carry no state; forget them so the dict stays small.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < burst - 1}
        return 0.0

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._data.clear()


# INCR and set the expiry only on the first increment, atomically.
_INCR_WITH_TTL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


# Token buckets in one round trip, on Redis' clock so every node agrees: one
# bucket per key, ARGV holding each key's rate and burst in turn. A key named
# twice is taken from twice, in order. (Under Redis Cluster a script's keys must
# share a slot; there the batch would be a pipeline of one-key calls instead.)
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local waits = {}
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens = tonumber(state[1]) or burst
  local at = tonumber(state[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  local wait = 0
  if tokens < 1 then
    wait = (1 - tokens) / rate
  else
    tokens = tokens - 1
  end
  -- %.6f: tostring keeps 14 digits, which rounds a Unix time to 0.1 ms and
  -- would skew the refill of a bucket taken from twice in one call.
  redis.call('HSET', key, 'tokens', tostring(tokens), 'at', string.format('%.6f', now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
  waits[i] = tostring(wait)
end
return waits
"""

# Buckets taken from in one script call at most.
_TAKE_BATCH = 256
# Script calls out at once; and how long one may take before its takes count
# as unavailable (callers such as the socket event limiter then let events
# through rather than stall every socket behind a slow Redis).
_TAKES_IN_FLIGHT = 4
_TAKE_TIMEOUT = 1.0


class RedisKeyValueStore:
    """Redis-backed store shared by all nodes; every key carries the deployment prefix."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix
        self._incr = client.register_script(_INCR_WITH_TTL)
        self._take = client.register_script(_TAKE)
        # Every event on a socket takes a token: concurrent takes share a call.
        self._takes: Batcher[tuple[str, float, int], float] = Batcher(
            self._take_many,
            max_batch=_TAKE_BATCH,
            max_in_flight=_TAKES_IN_FLIGHT,
            name="parley-rate-limits",
        )

    @classmethod
    def from_url(cls, url: str, *, prefix: str) -> RedisKeyValueStore:
        client = redis_client(
            url,
            socket_timeout=5,
            socket_connect_timeout=5,
            health_check_interval=30,
            # A pooled connection goes stale when Redis restarts: retry on a new one.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        return cls(client, prefix=prefix)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._k(key))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def set(
        self, key: str, value: bytes, *, ttl: float, only_if_absent: bool = False
    ) -> bool:
        try:
            done = await self._redis.set(
                self._k(key), value, px=max(1, int(ttl * 1000)), nx=only_if_absent
            )
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return bool(done)

    async def delete(self, key: str) -> bool:
        try:
            return bool(await self._redis.delete(self._k(key)))
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def incr(self, key: str, *, ttl: float) -> int:
        try:
            count = await self._incr(keys=[self._k(key)], args=[max(1, int(ttl * 1000))])
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return int(count)

    async def ttl(self, key: str) -> float | None:
        try:
            millis = await self._redis.pttl(self._k(key))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return None if millis < 0 else millis / 1000

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        return await self._takes.submit((self._k(key), rate, burst))

    async def _take_many(self, buckets: list[tuple[str, float, int]]) -> list[float]:
        args: list[float | int] = []
        for _, rate, burst in buckets:
            args += (rate, burst)
        try:
            async with asyncio.timeout(_TAKE_TIMEOUT):
                waits = await self._take(keys=[key for key, _, _ in buckets], args=args)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        except TimeoutError:
            raise UnavailableError(
                f"key-value store did not answer within {_TAKE_TIMEOUT:g} s"
            ) from None
        return [float(wait) for wait in waits]

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise _unavailable(exc) from exc

    async def close(self) -> None:
        await self._redis.aclose()


def _unavailable(exc: RedisError) -> UnavailableError:
    return UnavailableError(f"key-value store unreachable: {type(exc).__name__}")
