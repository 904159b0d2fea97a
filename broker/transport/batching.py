"""Group commit for consumers: messages that arrive while a batch is being committed ride together.

The audit sequencer serialises units of work, and each unit pays a transaction, a signed
checkpoint and (on SQLite) a synced commit. Under load many messages wait on the sequencer
at once; handing them to one unit of work pays those costs once per batch instead of once
per message. At low load a message never waits for company: the first one starts a batch
of one at once, and whatever arrives while it commits forms the next batch.

Items may come in lanes (the ingress uses one per agency). A batch is filled round robin
across the lanes that have items waiting, each lane taking at most its fair share of
``max_size``, so one lane's backlog can neither fill a batch nor push another lane's item
into a later one; each lane keeps its own order. A lane alone may fill a whole batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``run`` takes a batch and returns, per item and in order, its result or its own exception."""

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]],
                 *, max_size: int = 64) -> None:
        self._run = run
        self.max_size = max_size
        self._lanes: dict[Hashable, deque[tuple[T, asyncio.Future[R]]]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._lanes.values())

    async def submit(self, item: T, lane: Hashable = None) -> R:
        """The item's own result, or its own exception, once its batch has committed."""
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(lane, deque()).append((item, fut))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="group-commit")
        return await fut

    def _next_batch(self) -> list[tuple[T, asyncio.Future[R]]]:
        """Round robin over the waiting lanes, each up to its share of ``max_size``."""
        lanes = [q for q in self._lanes.values() if q]
        share = max(1, self.max_size // len(lanes))
        taken = dict.fromkeys(range(len(lanes)), 0)
        batch: list[tuple[T, asyncio.Future[R]]] = []
        while len(batch) < self.max_size:
            before = len(batch)
            for i, q in enumerate(lanes):
                if q and taken[i] < share and len(batch) < self.max_size:
                    batch.append(q.popleft())
                    taken[i] += 1
            if len(batch) == before:
                break
        # the lane served first goes last next time, so no lane is always at the front
        for key in [k for k, q in self._lanes.items() if not q]:
            del self._lanes[key]
        if self._lanes:
            first = next(iter(self._lanes))
            self._lanes[first] = self._lanes.pop(first)
        return batch

    async def _drain(self) -> None:
        while self.waiting:
            batch = self._next_batch()
            try:
                results: Sequence[R | Exception] = await self._run([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed (e.g. the database is away)
                results = [exc] * len(batch)
            except BaseException as exc:  # cancelled: nobody is left to finish the waiters' work
                for _, fut in batch + [w for q in self._lanes.values() for w in q]:
                    if not fut.done():
                        fut.cancel()
                self._lanes.clear()
                raise exc from None
            for (_, fut), result in zip(batch, results, strict=True):
                if fut.done():  # the waiter gave up (cancelled)
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
