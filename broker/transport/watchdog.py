"""Consumer watchdog: is every consumer this process started still registered with RabbitMQ?

RabbitMQ cancels a consumer on its own when the queue goes away (deleted by an operator, a
node lost); aiormq then drops the consumer tag from its channel and aio-pika's robust
channel tries to restore it, re-declaring the queue if it can. Until that succeeds the
process consumes nothing from that queue, while its connection looks healthy. The watchdog
asks the channel itself whether each tag is still there, and logs each loss and recovery
(also the moment RabbitMQ sends its cancel, through the channel's cancel callbacks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aio_pika.abc import AbstractQueue

log = structlog.get_logger("masp.watchdog")

Consumers = Callable[[], Sequence[tuple[AbstractQueue, str]]]


class ConsumerWatchdog:
    def __init__(self, consumers: Consumers, namespace: str = "") -> None:
        self._consumers = consumers
        self._namespace = namespace
        self._last: dict[str, bool] = {}

    def _name(self, queue: AbstractQueue) -> str:
        return queue.name.removeprefix(self._namespace)

    async def check(self) -> dict[str, bool]:
        """Queue name (without the namespace) → is our consumer on it alive. Empty if none started."""
        alive: dict[str, bool] = {}
        for queue, tag in self._consumers():
            name = self._name(queue)
            alive[name] = alive.get(name, True) and await self._alive(queue, tag)
        return alive

    async def watch(self) -> dict[str, bool]:
        """``check`` and log what changed since the last call."""
        alive = await self.check()
        for name, up in alive.items():
            if self._last.get(name, True) != up:
                if up:
                    log.info("consumer_restored", queue=name)
                else:
                    log.warning("consumer_lost", queue=name)
        self._last = alive
        return alive

    async def _alive(self, queue: AbstractQueue, tag: str) -> bool:
        channel = queue.channel
        if channel.is_closed:
            return False
        try:
            # a robust channel waits for its connection here; while it is down, it is not alive
            underlay = await asyncio.wait_for(channel.get_underlay_channel(), 0.5)
        except Exception:
            return False
        if underlay.is_closed:
            return False
        underlay.on_consumer_cancel_callbacks.add(self._on_cancel)  # a set: added once per channel
        consumers: dict[str, Any] = getattr(underlay, "consumers", {})
        return tag in consumers

    def _on_cancel(self, frame: Any) -> None:
        for queue, tag in self._consumers():
            if tag == getattr(frame, "consumer_tag", None):
                log.warning("consumer_cancelled_by_server", queue=self._name(queue))
