"""Group commit: concurrent submits share calls, keep their order and their own outcomes."""

from __future__ import annotations

import asyncio

import pytest

from storage.batching import Batcher


async def test_concurrent_submits_share_one_call_in_order() -> None:
    """What queues while a call is out goes in the next call, in submission order."""
    calls: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    batcher: Batcher[int, int] = Batcher(double, max_batch=100)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [2 * i for i in range(10)]
    assert calls == [list(range(10))]

    first = asyncio.create_task(batcher.submit(100))
    await asyncio.sleep(0)  # the first call is now out
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(101, 104)]
    assert await asyncio.gather(first, *rest) == [200, 202, 204, 206]
    assert calls[1:] == [[100], [101, 102, 103]]


async def test_batches_are_capped() -> None:
    """No call carries more than max_batch items."""
    sizes: list[int] = []

    async def echo(items: list[int]) -> list[int]:
        sizes.append(len(items))
        return items

    batcher: Batcher[int, int] = Batcher(echo, max_batch=4)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(10))) == list(range(10))
    assert sizes == [4, 4, 2]


async def test_an_outcome_that_is_an_exception_fails_only_its_item() -> None:
    async def check(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"odd {i}") if i % 2 else i for i in items]

    batcher: Batcher[int, int] = Batcher(check)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "odd 1"
    assert isinstance(results[3], ValueError)


async def test_a_failed_call_fails_its_batch_and_the_next_batch_still_runs() -> None:
    attempts = 0

    async def flaky(items: list[int]) -> list[int]:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("down")
        return items

    batcher: Batcher[int, int] = Batcher(flaky)
    with pytest.raises(ConnectionError, match="down"):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2


async def test_a_wrong_number_of_outcomes_is_an_error_not_a_hang() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    batcher: Batcher[int, int] = Batcher(short)
    with pytest.raises(RuntimeError, match="1 outcomes for 2 items"):
        await asyncio.gather(batcher.submit(1), batcher.submit(2))


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    """The item is still sent (its work may already be done); the others get their results."""
    seen: list[int] = []

    async def slow(items: list[int]) -> list[int]:
        seen.extend(items)
        await asyncio.sleep(0.02)
        return items

    batcher: Batcher[int, int] = Batcher(slow)
    cancelled = asyncio.create_task(batcher.submit(1))
    kept = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0.005)
    cancelled.cancel()
    assert await kept == 2
    assert seen == [1, 2]
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_a_hung_call_does_not_hold_up_the_next_batches() -> None:
    """With two calls allowed out at once, a call that never returns blocks only its own items."""
    release = asyncio.Event()

    async def maybe_hang(items: list[int]) -> list[int]:
        if 0 in items:
            await release.wait()
        return items

    batcher: Batcher[int, int] = Batcher(maybe_hang, max_in_flight=2)
    stuck = asyncio.create_task(batcher.submit(0))
    await asyncio.sleep(0)
    assert await asyncio.wait_for(asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3))), 1) == [
        1,
        2,
        3,
    ]
    assert not stuck.done()
    release.set()
    assert await stuck == 0
