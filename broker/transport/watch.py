"""What runs beside the workers so delivery can be trusted: the dead-letter keeper, the
case-event feed and the safeguarding timers. Started after the workers declared the topology.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from datetime import timedelta

from aio_pika.abc import AbstractChannel, AbstractRobustConnection

from broker.exchange import Exchange
from broker.safeguarding import SafeguardingTimers
from broker.transport.dead_letters import DeadLetterKeeper
from broker.transport.drain import Drain
from broker.transport.events import CaseEvents
from broker.transport.topology import Names


class DeliveryWatch:
    def __init__(self, exchange: Exchange, connection: AbstractRobustConnection, names: Names, *,
                 delivery_expiry: timedelta, timer_interval_s: float) -> None:
        self.exchange = exchange
        self.connection = connection
        self.names = names
        self.timers = SafeguardingTimers(exchange, delivery_expiry)
        self.timer_interval_s = timer_interval_s
        self.events: CaseEvents | None = None
        self._drain = Drain()
        self._channel: AbstractChannel | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=16)
        await DeadLetterKeeper(self.exchange, self._channel, self.names, self._drain).start()
        events_channel = await self.connection.channel(publisher_confirms=True)
        self.events = CaseEvents(self.exchange, events_channel, self.names)
        self._tasks = [asyncio.create_task(self.events.run(), name="case-events"),
                       asyncio.create_task(self.timers.run(self.timer_interval_s), name="safeguarding")]

    async def stop(self) -> None:
        await self._drain.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.events is not None:
            await self.events.stop()
        await self._drain.close(self._channel)
