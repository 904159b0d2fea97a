"""The timeline tool's bookkeeping: steps are timed while wrapped and restored afterwards."""

from __future__ import annotations

import asyncio
import types

import pytest

from bench.timeline import Timeline, summarise, timed


def test_steps_are_timed_in_order_and_unwrapped_afterwards() -> None:
    calls: list[str] = []

    def sync_step(x: int) -> int:
        calls.append("sync")
        return x + 1

    async def async_step(x: int) -> int:
        calls.append("async")
        await asyncio.sleep(0.01)
        return x * 2

    owner = types.SimpleNamespace(sync_step=sync_step, async_step=async_step)
    events: list[tuple[str, float, float]] = []
    with timed(((owner, "sync_step", "one"), (owner, "async_step", "two")), events):
        assert owner.sync_step(1) == 2
        assert asyncio.run(owner.async_step(3)) == 6
    assert calls == ["sync", "async"]
    assert [label for label, _, _ in events] == ["one", "two"]
    assert events[1][2] - events[1][1] >= 0.009  # the awaited time is inside the step
    assert owner.sync_step is sync_step and owner.async_step is async_step


def test_a_failing_step_is_still_recorded_and_unwrapped() -> None:
    def broken() -> None:
        raise ValueError("boom")

    owner = types.SimpleNamespace(broken=broken)
    events: list[tuple[str, float, float]] = []
    with pytest.raises(ValueError, match="boom"), timed(((owner, "broken", "b"),), events):
        owner.broken()
    assert [label for label, _, _ in events] == ["b"]
    assert owner.broken is broken


def test_summary_matches_the_nth_call_of_each_step_across_messages() -> None:
    timelines: list[Timeline] = [
        [("seal", 0.004, 0.001), ("decrypt", 0.001, 0.002), ("seal", 0.006, 0.003)],
        [("decrypt", 0.003, 0.004), ("seal", 0.008, 0.001), ("seal", 0.010, 0.001)],
    ]
    rows = summarise(timelines)
    assert [label for _, _, label, _ in rows] == ["decrypt #1", "seal #1", "seal #2"]
    start, duration, _, per = rows[0]
    assert start == pytest.approx(2.0) and duration == pytest.approx(3.0) and per == 1.0
    assert rows[2][0] == pytest.approx(8.0) and rows[2][1] == pytest.approx(2.0)
    assert summarise([[("x", 0.0, 0.001)], []])[0][3] == 0.5  # ran in one message of two
