"""A junk flood on masp.ingress from one agency's RabbitMQ user, in a process of its own.

``FLOOD_URL=amqp://… python -m tests.integration.flood_publisher EXCHANGE ROUTING_KEY COUNT SECONDS RATE``
publishes ``COUNT`` junk messages (random bytes, never a valid JWE), paced at ``RATE`` per
second and stopping after ``SECONDS`` whatever is left, with ``user_id`` set and a reply
queue it drains, as a hostile partner would. It prints ``started`` once connected and
then one JSON line: how many it published and in how long. Its own process, so its CPU is
not the broker's under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from adapters.runtime import ingress_message


async def flood(url: str, exchange: str, routing_key: str, count: int, seconds: float, rate: float) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        # no publisher confirms: a flood does not wait to be told, and the publisher's own CPU
        # stays small beside the broker under test on a shared machine
        channel = await connection.channel(publisher_confirms=False)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)

        async def drop(message: AbstractIncomingMessage) -> None:  # the hostile side reads nothing
            del message

        await replies.consume(drop, no_ack=True)
        target = await channel.get_exchange(exchange, ensure=False)
        tail = os.urandom(700).hex().encode()  # ~1.4 KB of junk, a different digest each
        print("started", flush=True)
        start = time.monotonic()
        sent = 0
        while sent < count and time.monotonic() - start < seconds:
            due = min(count, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                await target.publish(ingress_message(b"%08d" % sent + tail, connection,
                                                     reply_to=replies.name), routing_key=routing_key)
                sent += 1
            await asyncio.sleep(0.01)
        await channel.close()  # waits for what was written
        print(json.dumps({"published": sent, "seconds": round(time.monotonic() - start, 3)}), flush=True)


if __name__ == "__main__":
    exchange, key, count, seconds, rate = sys.argv[1:6]  # the URL (a password) is not in argv
    asyncio.run(flood(os.environ["FLOOD_URL"], exchange, key, int(count), float(seconds), float(rate)))
