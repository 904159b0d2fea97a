"""A broker with the demonstration case played through it, for the console's tests.

The whole broker on the real RabbitMQ (its own namespace) and a real database, the four
agency adapters, the docs/domain.md §5 case played by them (so there are real disclosures, a
refusal, a pending override and witnessed checkpoints), and one poison message dead-lettered
in the nhs inbox so there is something for ops to replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika

from broker.api.auth import issue_user_token
from broker.demo.run import Demo
from broker.service import BrokerService, init_state
from broker.store import dead_letters
from broker.transport import topology
from tests.integration.conftest import AMQP_URL, make_settings

POISON = b"POISON-not-a-jwe: Claire Hutton, 14 Larkspur Road"  # must never be shown anywhere


@dataclass
class DemoBroker:
    service: BrokerService
    demo: Demo

    def token(self, role: str, sub: str) -> str:
        exchange = self.service.exchange
        return issue_user_token(exchange.broker, sub, role, exchange.clock())


async def _poison(service: BrokerService, connection: aio_pika.abc.AbstractRobustConnection) -> None:
    async with connection.channel(publisher_confirms=True) as ch:
        target = await ch.get_exchange(service.names.deliver, ensure=False)
        await target.publish(aio_pika.Message(POISON, message_id="poison-console",
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key="nhs")
    for _ in range(200):
        async with service.exchange.sessions() as session:
            if await dead_letters.pending_count(session):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the poison message was not dead-lettered")


@asynccontextmanager
async def demo_broker(tmp_path: Path, database_url: str, *, sample_s: float = 0.5
                      ) -> AsyncIterator[DemoBroker]:
    settings = make_settings(tmp_path, database_url).model_copy(update={"ops_sample_s": sample_s})
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    connection = await aio_pika.connect_robust(AMQP_URL)
    demo = Demo(service, connection, tmp_path / "adapters")
    try:
        await service.start_workers()
        await demo.start_adapters()
        result = await demo.play()
        assert result.ok, [c.what for c in result.checks if not c.ok]
        await _poison(service, connection)
        yield DemoBroker(service, demo)
    finally:
        await demo.stop_adapters()
        await service.close()
        await connection.close()
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)
