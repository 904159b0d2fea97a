"""``masp adapter run AGENCY``: one agency's adapter as a long-running process."""

from __future__ import annotations

import asyncio

import aio_pika
import structlog

from adapters.runtime import AdapterRuntime
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.settings import Settings
from broker.transport.topology import Names, declare

log = structlog.get_logger("masp.adapter")


async def run_adapter(settings: Settings, agency: str) -> None:
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    runtime = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry,
                             settings.state_dir / "adapters" / agency, names=Names(settings.namespace))
    connection = await aio_pika.connect_robust(settings.amqp_url, timeout=10)
    try:
        async with connection.channel() as ch:  # the adapter may start before the broker
            await declare(ch, runtime.names, delivery_limit=settings.delivery_limit)
        await runtime.start(connection)
        log.info("adapter_running", agency=agency)
        await asyncio.Event().wait()
    finally:
        await runtime.stop()
        await connection.close()
