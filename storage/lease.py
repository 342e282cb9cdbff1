"""A lease in the key-value store: one node of many does a singleton job.

The holder renews the lease on every round; if it dies, another node takes
over once the TTL runs out; a node shutting down releases it at once.
Holding a lease is an optimisation, never the only guard: the job's writes
must still be safe if two nodes briefly both believe they hold it.
"""

from __future__ import annotations

import uuid

from storage.kv import KeyValueStore


class Lease:
    def __init__(self, kv: KeyValueStore, name: str, *, ttl: float) -> None:
        self._kv = kv
        self._key = f"lease:{name}"
        self._ttl = ttl
        self._holder = uuid.uuid4().hex.encode()

    async def hold(self) -> bool:
        """Take or renew the lease; False while another node holds it."""
        current = await self._kv.get(self._key)
        if current is None:
            return await self._kv.set(self._key, self._holder, ttl=self._ttl, only_if_absent=True)
        if current != self._holder:
            return False
        await self._kv.set(self._key, self._holder, ttl=self._ttl)
        return True

    async def held(self) -> bool:
        """Whether this holder has the lease now (without taking or renewing it)."""
        return await self._kv.get(self._key) == self._holder

    async def release(self) -> None:
        if await self.held():
            await self._kv.delete(self._key)
