"""Consumer handlers that continue the trace a message carries in its AMQP headers.

Used by the broker's consumers and the adapters' alike: the handler runs inside a
``CONSUMER`` span whose parent is the message's ``traceparent`` (never anything else that is
current in the process). For deliveries, the delivery id (their AMQP ``message_id``) is
bound to every log line and set on the span.
"""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage
from opentelemetry.trace import SpanKind

from broker import telemetry
from broker.transport.drain import Handler


def traced(name: str, handler: Handler, *, delivery: bool = False, **attrs: object) -> Handler:
    async def consume(message: AbstractIncomingMessage) -> None:
        ids = {"delivery_id": message.message_id} if delivery else {}
        with telemetry.continue_trace(message.headers, name, SpanKind.CONSUMER, via="amqp",
                                      redelivered=bool(message.redelivered), **attrs), \
                telemetry.observed(**ids):
            await handler(message)
    return consume
