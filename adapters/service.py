"""``masp adapter run AGENCY``: one agency's adapter as a long-running process.

It consumes the agency's inbox queue (verify, de-duplicate, write native files to the
outbox folder, acknowledge), watches the inbox folder for native files to send, serves the
local HTTP endpoint for the same, and witnesses the audit log's checkpoints: it pulls them
from the broker every ``MASP_WITNESS_EVERY_S``, and its endpoint answers the C2SP
tlog-witness ``add-checkpoint`` for a broker that pushes them (``MASP_WITNESSES``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

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


#: Default local endpoint port per agency (``--port`` overrides).
DEFAULT_PORTS = {"police": 8101, "probation": 8102, "nhs": 8103, "advocacy": 8104}


@dataclass(frozen=True)
class AdapterOptions:
    inbox: Path | None = None  # default <state>/adapters/<agency>/inbox
    outbox: Path | None = None  # default <state>/adapters/<agency>/outbox
    host: str = "127.0.0.1"
    port: int | None = None
    poll_s: float = 2.0


async def run_adapter(settings: Settings, agency: str, options: AdapterOptions | None = None) -> None:
    # imported here: ``masp serve`` imports this module for ``witness_forever`` alone
    import uvicorn

    from adapters.endpoint import create_endpoint
    from adapters.formats import native_format
    from adapters.host import AgencyAdapter, http_submitter

    opts = options or AdapterOptions()
    telemetry.setup(settings.otlp_endpoint, service=f"masp-adapter-{agency}",
                    sample_ratio=settings.trace_sample_ratio)
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    home = settings.state_dir / "adapters" / agency
    runtime = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry, home,
                             names=Names(settings.namespace))
    connection = await amqp.connect_robust(settings)
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with connection.channel() as ch:  # the adapter may start before the broker
            await declare(ch, runtime.names, delivery_limit=settings.delivery_limit)
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            adapter = AgencyAdapter(runtime, native_format(agency), http_submitter(runtime, client),
                                    inbox=opts.inbox or home / "inbox", outbox=opts.outbox or home / "outbox")
            await runtime.start(connection)
            endpoint = uvicorn.Server(uvicorn.Config(
                create_endpoint(adapter, witness=runtime.tlog_witness()), host=opts.host,
                port=opts.port or DEFAULT_PORTS[agency],
                log_level="warning", access_log=False, log_config=None))
            log.info("adapter_running", agency=agency, port=opts.port or DEFAULT_PORTS[agency])
            await asyncio.gather(witness_forever(runtime, client, settings.witness_every_s),
                                 adapter.watch_inbox(opts.poll_s), endpoint.serve())
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
