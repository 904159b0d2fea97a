"""Retry with capped exponential backoff for infrastructure failures (the database away, a
connection dropped). Refusals (``MaspError``) are answers, not failures: never retried.

Logs carry the exception type only: driver messages can quote SQL parameters.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from broker.errors import MaspError

log = structlog.get_logger("masp.retry")
T = TypeVar("T")
_jitter = secrets.SystemRandom()


async def with_backoff(op: Callable[[], Awaitable[T]], *, what: str, budget_s: float | None = 60.0,
                       base_s: float = 0.2, cap_s: float = 5.0) -> T:
    """Run ``op`` until it succeeds, raises a ``MaspError``, or ``budget_s`` is spent.

    ``budget_s=None`` retries until cancelled (for work that has nowhere else to go).
    """
    loop = asyncio.get_running_loop()
    deadline = None if budget_s is None else loop.time() + budget_s
    delay = base_s
    attempt = 1
    while True:
        try:
            return await op()
        except MaspError:
            raise
        except Exception as exc:
            pause = delay * _jitter.uniform(0.8, 1.2)
            if deadline is not None and loop.time() + pause > deadline:
                log.error("retry_budget_spent", what=what, attempts=attempt, error=type(exc).__name__)
                raise
            log.warning("retrying", what=what, attempt=attempt, retry_in_s=round(pause, 2),
                        error=type(exc).__name__)
            await asyncio.sleep(pause)
            delay = min(delay * 2, cap_s)
            attempt += 1
