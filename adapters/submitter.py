"""Many submissions over one AMQP channel: confirms pipelined, replies matched by correlation id.

``AdapterRuntime.submit_amqp`` opens a channel and a reply queue per message, which is
right for an adapter sending a referral now and then; an agency system sending in bulk
(or the benchmark) keeps one channel and one reply queue and has many messages in flight.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from adapters.runtime import ingress_message
from broker import wire
from broker.transport.topology import Names


class AmqpSubmitter:
    """Submits as ``agency`` (the routing key) under the RabbitMQ user of ``connection`` (``user_id``)."""

    def __init__(self, connection: AbstractRobustConnection, names: Names, agency: str) -> None:
        self.connection = connection
        self.names = names
        self.agency = agency
        self._channel: AbstractChannel | None = None
        self._replies: AbstractQueue | None = None
        self._tag: str | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def start(self) -> None:
        self._channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self._replies = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        self._tag = await self._replies.consume(self._on_reply, no_ack=True)

    async def close(self) -> None:
        for fut in self._pending.values():
            fut.cancel()
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        fut = self._pending.pop(message.correlation_id or "", None)
        if fut is not None and not fut.done():
            fut.set_result(json.loads(message.body))

    async def submit(self, jwe: str, *, timeout: float = 60.0) -> dict[str, Any]:
        """Publish to ``masp.ingress`` (confirmed, mandatory) and wait for the broker's reply."""
        if self._channel is None or self._replies is None:
            raise RuntimeError("submitter is not started")
        correlation = wire.new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = fut
        try:
            ingress = await self._channel.get_exchange(self.names.ingress, ensure=False)
            await ingress.publish(ingress_message(
                jwe, self.connection, reply_to=self._replies.name, correlation_id=correlation),
                routing_key=self.agency, mandatory=True)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(correlation, None)
