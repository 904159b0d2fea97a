"""``masp adapter run AGENCY``: one agency's adapter as a long-running process."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from adapters.runtime import AdapterRuntime
from broker import telemetry
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.errors import LogInconsistent, LogRollback, MaspError
from broker.settings import Settings
from broker.transport import connect as amqp
from broker.transport.topology import Names, declare

log = structlog.get_logger("masp.adapter")


async def run_adapter(settings: Settings, agency: str) -> None:
    telemetry.setup(settings.otlp_endpoint, service=f"masp-adapter-{agency}",
                    sample_ratio=settings.trace_sample_ratio)
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    runtime = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry,
                             settings.state_dir / "adapters" / agency, names=Names(settings.namespace))
    connection = await amqp.connect_robust(settings)
    try:
        async with connection.channel() as ch:  # the adapter may start before the broker
            await declare(ch, runtime.names, delivery_limit=settings.delivery_limit)
        await runtime.start(connection)
        log.info("adapter_running", agency=agency)
        base = f"http://{settings.http_host}:{settings.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            await witness_forever(runtime, client, settings.witness_every_s)
    finally:
        await runtime.stop()
        await connection.close()


async def witness_forever(runtime: AdapterRuntime, client: httpx.AsyncClient,
                          every: float) -> None:
    """Cosign the broker's newest checkpoint every ``every`` seconds.

    A rollback or a forked log is logged and stops this witness: it must not cosign again
    until an operator has looked, so a quorum for a rewritten history cannot form.
    """
    while True:
        try:
            await runtime.witness(client)
        except (LogRollback, LogInconsistent) as exc:
            log.error("witness_detected_inconsistency", agency=runtime.agency, code=exc.code)
            raise
        except (httpx.HTTPError, MaspError) as exc:
            log.warning("witness_failed", agency=runtime.agency, code=type(exc).__name__)
        await asyncio.sleep(every)
