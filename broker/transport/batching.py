"""Group commit for consumers: messages that arrive while a batch is being committed ride together.

The audit sequencer serialises units of work, and each unit pays a transaction, a signed
checkpoint and (on SQLite) a synced commit. Under load many messages wait on the sequencer
at once; handing them to one unit of work pays those costs once per batch instead of once
per message. At low load a message never waits for company: the first one starts a batch
of one at once, and whatever arrives while it commits forms the next batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

class Batcher(Generic[T, R]):
    """``run`` takes a batch and returns, per item and in order, its result or its own exception."""

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
                 *, max_size: int = 64) -> None:
        self._run = run
        self.max_size = max_size
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """The item's own result, or its own exception, once its batch has committed."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="group-commit")
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self.max_size], self._pending[self.max_size:]
            try:
                results: Sequence[R | Exception] = await self._run([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed (e.g. the database is away)
                results = [exc] * len(batch)
            except BaseException as exc:  # cancelled: nobody is left to finish the waiters' work
                for _, fut in batch + self._pending:
                    if not fut.done():
                        fut.cancel()
                self._pending.clear()
                raise exc from None
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # the waiter gave up (cancelled)
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
