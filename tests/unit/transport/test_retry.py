"""Backoff: infrastructure failures are retried, refusals are answers, budgets end."""

from __future__ import annotations

import pytest

from broker.errors import MalformedMessage
from broker.transport.retry import with_backoff


async def test_a_transient_failure_is_retried_until_it_succeeds() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("database away")
        return "ok"

    assert await with_backoff(flaky, what="t", base_s=0.001) == "ok"
    assert len(calls) == 3


async def test_a_refusal_is_not_retried() -> None:
    calls: list[int] = []

    async def refused() -> None:
        calls.append(1)
        raise MalformedMessage("no")

    with pytest.raises(MalformedMessage):
        await with_backoff(refused, what="t", base_s=0.001)
    assert calls == [1]


async def test_the_budget_ends_the_retries() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await with_backoff(down, what="t", budget_s=0.05, base_s=0.01, cap_s=0.01)
    assert 2 <= len(calls) <= 8
