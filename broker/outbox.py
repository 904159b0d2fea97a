"""This process's view of the outbox: deliveries it committed and has not yet published.

The outbox is the ``delivery`` table: a delivery is ``queued`` in the unit of work that
decides it and the relay publishes it from there, so none is lost to a crash. A relay that
learnt of its own process's deliveries only by reading the table again would pay, per
round, a claim statement that returns each ciphertext it has just written. So a unit of
work also hands its deliveries here once it has committed, and the relay publishes those
as they are; the table remains the record. It is read (swept) every ``sweep_s``, as the
relay polled it before, and at once when asked (a route resumed, a publish failed): that is
how a paused route's backlog, anything this process could not publish and what a process
that died left queued go out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from itertools import islice

from broker.store.deliveries import QueuedDelivery


class Outbox:
    def __init__(self, sweep_s: float = 1.0, max_fresh: int = 5000) -> None:
        self.ready = asyncio.Event()  # set when there is something to publish
        self.sweep_s = sweep_s
        #: Beyond this many (a relay that cannot keep up or has stopped), deliveries are not
        #: held in memory as well: they wait in the table for a sweep
        self.max_fresh = max_fresh
        self._fresh: dict[str, QueuedDelivery] = {}
        self._swept_at = float("-inf")

    def committed(self, deliveries: Iterable[QueuedDelivery]) -> None:
        """A unit of work that queued these deliveries has committed."""
        for d in deliveries:
            if len(self._fresh) >= self.max_fresh:
                self._swept_at = float("-inf")
                break
            self._fresh[d.delivery_id] = d
        self.ready.set()

    def sweep_soon(self) -> None:
        """Read the table at the relay's next round (a route resumed, a publish failed)."""
        self._swept_at = float("-inf")
        self.ready.set()

    def sweep_due(self) -> bool:
        """True if the relay should read the table now; the sweep then counts as done."""
        now = time.monotonic()
        if now - self._swept_at < self.sweep_s:
            return False
        self._swept_at = now
        return True

    def take(self, limit: int) -> list[QueuedDelivery]:
        """Up to ``limit`` fresh deliveries, oldest first; they are no longer fresh."""
        return [self._fresh.pop(delivery_id) for delivery_id in list(islice(self._fresh, limit))]

    def published(self, delivery_ids: Iterable[str]) -> None:
        """A sweep published these: they are fresh no more."""
        for delivery_id in delivery_ids:
            self._fresh.pop(delivery_id, None)

    def __len__(self) -> int:
        return len(self._fresh)
