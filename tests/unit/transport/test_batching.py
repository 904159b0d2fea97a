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


async def test_one_lanes_backlog_takes_only_its_share_of_a_batch() -> None:
    """Per-agency lanes: a backlog of 20 from nhs cannot push probation's one message into a
    later batch, nor fill the batch it shares; alone, a lane may fill whole batches."""
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def run(items: Sequence[str]) -> list[str | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return list(items)

    batcher: Batcher[str, str] = Batcher(run, max_size=8)
    first = asyncio.create_task(batcher.submit("police-0", lane="police"))
    await asyncio.sleep(0)  # the first batch is committing: what follows waits for the next one
    junk = [asyncio.create_task(batcher.submit(f"nhs-{i}", lane="nhs")) for i in range(20)]
    await asyncio.sleep(0)
    honest = asyncio.create_task(batcher.submit("probation-0", lane="probation"))
    await asyncio.sleep(0)
    release.set()
    assert await first == "police-0" and await honest == "probation-0"
    assert [await t for t in junk] == [f"nhs-{i}" for i in range(20)]  # every item, in order
    assert batches[0] == ["police-0"]
    second = batches[1]
    assert "probation-0" in second and sum(x.startswith("nhs") for x in second) == 4  # 8 // 2 lanes
    assert [len(b) for b in batches[2:]] == [8, 8]  # then nhs alone fills batches
    assert [x for b in batches for x in b if x.startswith("nhs")] == [f"nhs-{i}" for i in range(20)]


async def test_lanes_take_turns_to_go_first() -> None:
    batches: list[list[str]] = []
    release = asyncio.Event()

    async def run(items: Sequence[str]) -> list[str | Exception]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return list(items)

    batcher: Batcher[str, str] = Batcher(run, max_size=1)  # one item per batch: order shows
    first = asyncio.create_task(batcher.submit("x", lane="x"))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.submit(f"{lane}{i}", lane=lane))
            for i in range(2) for lane in ("a", "b")]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(first, *rest)
    assert batches[1:] == [["a0"], ["b0"], ["a1"], ["b1"]]
