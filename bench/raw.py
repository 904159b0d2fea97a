"""The transport alone: what RabbitMQ and aio-pika do on this machine, as the yardstick.

Same guarantees the pipeline asks of RabbitMQ: persistent messages, publisher confirms, a
durable quorum queue, manual acknowledgements; the same message size as a sealed
submission. A round trip is publish → confirm → consume → ack. The queue has a unique
name and is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bench.stats import Latencies, ServerCpu, listening_process


@dataclass
class RawBench:
    message_bytes: int
    count: int
    msgs_per_s: float
    low_load: Latencies
    saturation: Latencies
    #: RabbitMQ's own CPU seconds per message over the saturation run (None: not readable here)
    rabbitmq_cpu_s_per_msg: float | None = None


async def run_raw_bench(amqp_url: str, *, message_bytes: int, count: int, low_load: int = 200,
                        window: int = 256) -> RawBench:
    """Low load (one message at a time), then ``count`` messages with ``window`` unconfirmed."""
    connection = await aio_pika.connect(amqp_url)
    name = f"masp-bench-raw-{uuid.uuid4().hex[:10]}"
    body_pad = b"x" * max(0, message_bytes - 20)
    sent: dict[int, float] = {}
    arrived: dict[int, float] = {}
    waiters: dict[int, asyncio.Future[None]] = {}
    everything = asyncio.Event()
    expected = {"n": -1}
    async with connection:
        consume_ch = await connection.channel()
        await consume_ch.set_qos(prefetch_count=window)
        queue = await consume_ch.declare_queue(name, durable=True,
                                               arguments={"x-queue-type": "quorum"})
        publish_ch = await connection.channel(publisher_confirms=True)

        async def on_message(message: AbstractIncomingMessage) -> None:
            n = int(message.body[:20])
            await message.ack()
            arrived[n] = time.perf_counter()
            if len(arrived) == expected["n"]:
                everything.set()
            fut = waiters.pop(n, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

        tag = await queue.consume(on_message)

        async def publish(n: int) -> None:
            sent[n] = time.perf_counter()
            await publish_ch.default_exchange.publish(aio_pika.Message(
                f"{n:020d}".encode() + body_pad, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name)

        try:
            loop = asyncio.get_running_loop()
            warm = 50
            for n in range(warm + low_load):  # one at a time: the round-trip latency floor
                waiters[n] = fut = loop.create_future()
                await publish(n)
                await asyncio.wait_for(fut, 30)
            low = Latencies.of([arrived[n] - sent[n] for n in range(warm, warm + low_load)])

            first = warm + low_load
            ids = range(first, first + count)
            expected["n"] = first + count
            rabbit = ServerCpu(listening_process(urlsplit(amqp_url).port or 5672))
            rabbit.start()
            started = time.perf_counter()
            gate = asyncio.Semaphore(window)

            async def confirmed(n: int) -> None:
                async with gate:
                    await publish(n)

            await asyncio.gather(*(confirmed(n) for n in ids))
            await asyncio.wait_for(everything.wait(), 300)
            elapsed = max(arrived[n] for n in ids) - started
            rabbit_s = rabbit.seconds()
            sat = Latencies.of([arrived[n] - sent[n] for n in ids])
        finally:
            await queue.cancel(tag)
            await queue.delete(if_unused=False, if_empty=False)
    return RawBench(message_bytes, count, count / elapsed, low, sat,
                    None if rabbit_s is None else rabbit_s / count)
