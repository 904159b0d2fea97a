"""Issue 7, done (3): /readyz goes unready when RabbitMQ goes away and ready when it returns,
and names a consumer RabbitMQ cancelled (its queue deleted) until it is consuming again.

The broker under test reaches the shared RabbitMQ through a TCP proxy in this process; the
test cuts the proxy, not RabbitMQ, so the other tests are not disturbed.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from adapters.runtime import AdapterRuntime
from broker.api.app import create_app
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.service import BrokerService, init_state
from broker.transport import topology
from tests.exposition import parse
from tests.integration.conftest import AMQP_URL, make_settings
from tests.integration.observability.tcp_proxy import TcpProxy

INGRESS = {f"masp.ingress.{a}": True for a in AGENCIES}
ALL_CONSUMERS = {**INGRESS, "masp.acks": True}


class Proxied:
    def __init__(self, service: BrokerService, http: httpx.AsyncClient, proxy: TcpProxy) -> None:
        self.service, self.http, self.proxy = service, http, proxy

    async def readyz_until(self, status: int, timeout: float = 20.0,
                           failed: set[str] | None = None) -> dict[str, Any]:
        """The first /readyz with ``status`` (and naming at least ``failed``: the channels notice
        a cut before the connection does, so "consumers" alone may come first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            resp = await self.http.get("/readyz")
            if resp.status_code == status and (failed or set()) <= set(resp.json()["failed"]):
                body: dict[str, Any] = resp.json()
                return body
            assert loop.time() < deadline, f"/readyz still {resp.status_code}: {resp.text}"
            await asyncio.sleep(0.1)


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[Proxied]:
    proxy = TcpProxy("127.0.0.1", 5672)
    port = await proxy.start()
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}").model_copy(
        update={"amqp_url": f"amqp://guest:guest@127.0.0.1:{port}/?reconnect_interval=0.2"})
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    await service.start_workers()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)),
                             base_url="http://masp.test")
    try:
        yield Proxied(service, http, proxy)
    finally:
        await http.aclose()
        await service.close()
        await proxy.cut()
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)


async def test_readyz_follows_rabbitmq_away_and_back(proxied: Proxied, tmp_path: Path) -> None:
    ready = await proxied.readyz_until(200)
    assert ready["failed"] == [] and ready["consumers"] == ALL_CONSUMERS
    assert set(ready["checks"]) == {"rabbitmq", "database", "keys", "dsa", "consumers", "outbox_relay"}

    await proxied.proxy.cut()  # RabbitMQ "stops" for this broker
    down = await proxied.readyz_until(503, failed={"rabbitmq", "consumers"})
    assert down["checks"]["database"] and down["checks"]["keys"] and down["checks"]["dsa"]
    assert (await proxied.http.get("/healthz")).status_code == 200  # alive, just not ready

    await proxied.proxy.start()  # ...and comes back: the robust connection reconnects
    back = await proxied.readyz_until(200)
    assert back["consumers"] == ALL_CONSUMERS

    # and the restored ingress consumer really consumes: a malformed submission is refused
    # (published as the broker's own RabbitMQ user, which may submit for the queue's agency)
    settings = proxied.service.settings
    police = AdapterRuntime(AgencyKeys.load(settings.keys_dir, "police"),
                            KeyRegistry.from_public_dir(settings.keys_dir), tmp_path / "police",
                            names=proxied.service.names)
    direct = await aio_pika.connect_robust(AMQP_URL)
    async with direct:
        reply = await police.submit_amqp(direct, "not.a.jwe", timeout=10)
    assert reply["code"] == "malformed"


async def test_readyz_names_a_consumer_cancelled_by_rabbitmq(proxied: Proxied,
                                                             log_output: io.StringIO) -> None:
    assert (await proxied.readyz_until(200))["consumers"] == ALL_CONSUMERS
    ingress = proxied.service.names.ingress_queue("police")
    operator = await aio_pika.connect(AMQP_URL)  # a second connection, as an operator's tool
    try:
        channel = await operator.channel()
        raw = await channel.get_underlay_channel()
        # delete the queue, and in the same breath hold its name with an exclusive queue, so
        # aio-pika's robust recovery cannot simply re-declare it behind our back
        await raw.queue_delete(ingress, nowait=True)
        await raw.queue_declare(ingress, exclusive=True)
        down = await proxied.readyz_until(503)
        assert down["failed"] == ["consumers"] and down["checks"]["rabbitmq"] is True
        assert down["consumers"] == {**ALL_CONSUMERS, "masp.ingress.police": False}
        gauges = parse((await proxied.http.get("/metrics")).text)
        up = {s.labels["queue"]: s.value for s in gauges["masp_consumer_up"].samples}
        assert up == {**{q: 1 for q in ALL_CONSUMERS}, "masp.ingress.police": 0}
    finally:
        await operator.close()  # the exclusive queue goes with its connection
    back = await proxied.readyz_until(200)  # recovery re-declares the queue and consumes again
    assert back["consumers"] == ALL_CONSUMERS
    events = [json.loads(line) for line in log_output.getvalue().splitlines() if line.strip()]
    assert {"event": "consumer_cancelled_by_server", "queue": "masp.ingress.police"}.items() <= next(
        e for e in events if e["event"] == "consumer_cancelled_by_server").items()
