"""Queue depths and consumers over AMQP itself (passive declares), so the ops view needs no
management plugin and no credentials beyond the broker's own.
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection

from broker.crypto.keys import AGENCIES
from broker.transport.topology import Names


def queue_names(names: Names) -> list[str]:
    return [*(names.ingress_queue(a) for a in AGENCIES), names.acks, names.dead_letters,
            *(names.inbox(a) for a in AGENCIES)]


async def queue_depths(connection: AbstractConnection, names: Names) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    channel: AbstractChannel | None = None
    try:
        for name in queue_names(names):
            if channel is None or channel.is_closed:
                channel = await connection.channel()
            try:
                q = await channel.declare_queue(name, passive=True)
            except Exception:  # a missing queue closes the channel: report it, open another
                found.append({"queue": name, "exists": False})
                continue
            result = q.declaration_result
            found.append({"queue": name, "exists": True, "messages": result.message_count,
                          "consumers": result.consumer_count})
    finally:
        if channel is not None and not channel.is_closed:
            await channel.close()
    return found
