"""What ``/readyz``, ``/metrics`` and the ops API know about this broker process.

``OpsMonitor.readiness`` runs the checks live (RabbitMQ, database, keys, DSA, consumers,
outbox relay); ``sample`` refreshes the gauges' snapshot (queue depths, audit size and
checkpoint age, unacknowledged and overdue deliveries); ``run`` does both every few seconds
in the background, so the consumer watchdog logs a lost consumer even when nobody asks and
OTLP exports fresh gauges.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import text

from broker.crypto.keys import AGENCIES, BROKER
from broker.metrics import OpsSnapshot
from broker.store import ops_queries
from broker.transport.depths import queue_depths
from broker.transport.watchdog import ConsumerWatchdog

if TYPE_CHECKING:
    from broker.service import BrokerService

log = structlog.get_logger("masp.ops")

CHECK_TIMEOUT_S = 3.0
HISTORY_SAMPLES = 240  # an hour at the default 15 s sampling period


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, bool]
    consumers: dict[str, bool] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return all(self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.checks.items() if not ok]

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "checks": self.checks, "failed": self.failed,
                "consumers": self.consumers}


class OpsMonitor:
    def __init__(self, service: BrokerService) -> None:
        self.service = service
        self.watchdog = ConsumerWatchdog(self._consumers, service.names.namespace)
        self._task: asyncio.Task[None] | None = None
        self._sampling = asyncio.Lock()
        #: Queue depths over time (wall clock, queue → messages) for the console's chart.
        self.history: deque[tuple[datetime, dict[str, int]]] = deque(maxlen=HISTORY_SAMPLES)

    def _consumers(self) -> list[Any]:
        workers = self.service.workers
        return list(workers.consumers) if workers is not None else []

    @property
    def overdue_after(self) -> timedelta:
        return timedelta(seconds=self.service.settings.ack_overdue_s)

    # --- readiness ---------------------------------------------------------------------------

    async def readiness(self) -> Readiness:
        consumers = await self.watchdog.check()
        workers = self.service.workers
        checks = {
            "rabbitmq": self._rabbitmq(),
            "database": await self._database(),
            "keys": self._keys(),
            "dsa": bool(self.service.exchange.bundle.agreements),
            "consumers": bool(consumers) and all(consumers.values()),
            "outbox_relay": workers is not None and workers.relay_alive,
        }
        return Readiness(checks, consumers)

    def _rabbitmq(self) -> bool:
        conn = self.service.connection
        return conn is not None and not conn.is_closed and conn.connected.is_set()

    async def _database(self) -> bool:
        async def ping() -> None:
            async with self.service.exchange.sessions() as session:
                await session.execute(text("SELECT 1"))
        try:
            await asyncio.wait_for(ping(), CHECK_TIMEOUT_S)
        except Exception:
            return False
        return True

    def _keys(self) -> bool:
        exchange = self.service.exchange
        try:
            for agency in (*AGENCIES, BROKER):
                exchange.registry.current(agency, "sig")
                exchange.registry.current(agency, "enc")
        except Exception:
            return False
        return exchange.broker.agency == BROKER

    # --- gauges ------------------------------------------------------------------------------

    async def sample(self) -> OpsSnapshot:
        """Refresh the gauges' snapshot; parts that cannot be read are left out, not guessed."""
        async with self._sampling:
            snap = OpsSnapshot(taken_at=time.monotonic())
            snap.consumers_up = await self.watchdog.watch()
            conn = self.service.connection
            if conn is not None and not conn.is_closed and conn.connected.is_set():
                with suppress(Exception):
                    depths = await asyncio.wait_for(queue_depths(conn, self.service.names), CHECK_TIMEOUT_S)
                    prefix = self.service.names.namespace
                    snap.queues = {d["queue"].removeprefix(prefix): (d["messages"], d["consumers"])
                                   for d in depths if d.get("exists")}
            with suppress(Exception):
                await asyncio.wait_for(self._sample_database(snap), CHECK_TIMEOUT_S)
            self.service.exchange.metrics.snapshot = snap
            if snap.queues:
                self.history.append((self.service.exchange.clock(),
                                     {q: m for q, (m, _) in snap.queues.items()}))
            return snap

    async def _sample_database(self, snap: OpsSnapshot) -> None:
        now = self.service.exchange.clock()
        async with self.service.exchange.sessions() as session:
            head = await ops_queries.audit_head(session)
            snap.unacknowledged = await ops_queries.awaiting_ack(session)
            snap.overdue = await ops_queries.awaiting_ack(session, now - self.overdue_after)
        if head is not None:
            snap.audit_entries = head[0]
            snap.checkpoint_age_s = max((now - head[1]).total_seconds(), 0.0)

    # --- background --------------------------------------------------------------------------

    def start(self, interval_s: float) -> None:
        self._task = asyncio.create_task(self._run(interval_s), name="ops-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, interval_s: float) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ops_sample_failed")
            await asyncio.sleep(interval_s)

    # --- the ops view of queues --------------------------------------------------------------

    async def queue_view(self, depths: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Queue depths with this process's consumer state and message rates (per second, 60 s)."""
        consumers = await self.watchdog.check()
        rates = self.service.exchange.metrics.rates
        prefix = self.service.names.namespace
        view = []
        for d in depths:
            name = str(d["queue"]).removeprefix(prefix)
            view.append({**d, "consumer_alive": consumers.get(name),
                         "rates_per_s": {"in": rates.rate(f"in:{name}"), "out": rates.rate(f"out:{name}"),
                                         "window_s": rates.window_s}})
        return view
