"""Graceful consumer shutdown: stop taking messages, let the ones in hand finish, then close.

Closing a channel while a handler is still publishing (an acknowledgement, a reply) makes
RabbitMQ close the whole connection with a channel error; so consumers are cancelled
first and in-flight handlers get a bounded time to finish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import TypeVar

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
T = TypeVar("T")


class Drain:
    def __init__(self) -> None:
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._consumers: list[tuple[AbstractQueue, str]] = []

    def track(self, handler: Handler) -> Handler:
        async def wrapped(message: AbstractIncomingMessage) -> None:
            self._inflight += 1
            self._idle.clear()
            try:
                await handler(message)
            finally:
                self._inflight -= 1
                if self._inflight == 0:
                    self._idle.set()
        return wrapped

    async def consume(self, queue: AbstractQueue, handler: Handler) -> str:
        tag = await queue.consume(self.track(handler))
        self._consumers.append((queue, tag))
        return tag

    @property
    def consumers(self) -> tuple[tuple[AbstractQueue, str], ...]:
        """(queue, consumer tag) of every consumer started and not yet closed here."""
        return tuple(self._consumers)

    async def close(self, *channels: AbstractChannel | None, timeout: float = 10.0) -> None:
        for queue, tag in self._consumers:
            with suppress(Exception):  # the channel may already be gone
                await asyncio.wait_for(queue.cancel(tag), timeout)
        self._consumers.clear()
        with suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        for ch in channels:
            if ch is not None and not ch.is_closed:
                with suppress(Exception):
                    await asyncio.wait_for(ch.close(), timeout)
