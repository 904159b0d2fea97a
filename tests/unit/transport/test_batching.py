"""Group commit: what arrives during a commit rides together; each item gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from broker.transport.batching import Batcher


async def test_items_arriving_during_a_batch_form_the_next_one() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()  # the first batch "commits" slowly
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run, max_size=3)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4], [5, 6]]  # a lone message never waits; max_size holds


async def test_each_item_gets_its_own_exception() -> None:
    async def run(items: Sequence[int]) -> list[int | Exception]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 1"
    assert isinstance(results[3], ValueError) and str(results[3]) == "bad 3"


async def test_a_failed_batch_fails_its_items_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(items: Sequence[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database away")
        return list(items)

    batcher: Batcher[int, int] = Batcher(run)
    with pytest.raises(ConnectionError):
        await batcher.submit(1)
    assert await batcher.submit(2) == 2
