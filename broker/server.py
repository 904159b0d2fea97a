"""``masp serve``: API, broker workers and outbox relay in one process (plus the demo adapters)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from types import FrameType
from urllib.parse import urlparse

import structlog
import uvicorn

from adapters.service import witness_forever
from broker import telemetry
from broker.api.app import create_app
from broker.api.auth import issue_user_token
from broker.demo.run import Demo
from broker.errors import ConfigurationError
from broker.service import BrokerService, settle_heap
from broker.settings import Settings
from broker.store.audit_log import read_entries
from broker.worker_pool import worker_processes

log = structlog.get_logger("masp.server")


def check_amqp_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast, with the command to fix it, when nothing listens on the AMQP port."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or (5671 if parsed.scheme == "amqps" else 5672)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError:
        raise ConnectionRefusedError(
            f"RabbitMQ is not reachable at {host}:{port} (amqp)") from None


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM/SIGINT are not re-raised once HTTP has stopped.

    uvicorn re-raises a captured signal when its own shutdown is done; with the default SIGTERM
    action that kills the process before ``serve`` has drained the workers, closed the store and
    flushed the last spans and metrics. Here a signal means: stop serving, then shut down
    cleanly and exit 0.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


#: How long a stopping ``serve --demo`` waits for the demo's cancelled task.
DEMO_STOP_GRACE_S = 5.0


async def serve(settings: Settings, *, demo: bool = False, workers: int = 1) -> None:
    """``workers`` > 1 adds that many minus one worker processes (consumers and relay, no
    HTTP) beside this one; they share the sequencer and outbox through PostgreSQL."""
    check_amqp_reachable(settings.amqp_url)
    if workers > 1 and not settings.db_url.startswith("postgresql"):
        raise ConfigurationError("several broker workers need PostgreSQL (MASP_DATABASE_URL)")
    tracing = telemetry.setup(settings.otlp_endpoint, service="masp-broker",
                              sample_ratio=settings.trace_sample_ratio)
    service = await BrokerService.open(settings)
    settle_heap()
    await service.start_workers()
    service.start_witnessing()
    pool = contextlib.ExitStack()
    if workers > 1:  # after open(): the schema exists before the other processes start
        await asyncio.to_thread(pool.enter_context,
                                worker_processes(settings.model_dump_json(), workers - 1))
    app = create_app(service)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                            log_level="warning", access_log=False,
                            log_config=None,  # uvicorn logs through our processors (broker/logs.py)
                            proxy_headers=False)  # the app applies MASP_FORWARDED_ALLOW_IPS itself
    server = _Server(config)
    demo_task: asyncio.Task[None] | None = None
    player = None
    if demo:
        assert service.connection is not None
        player = Demo(service, service.connection, settings.state_dir / "adapters")
        await player.start_adapters()
        demo_task = asyncio.create_task(_seed(service, player))
    _announce(settings, service, demo)
    try:
        await server.serve()
    finally:
        if demo_task is not None:
            demo_task.cancel()
            # Bounded: a cancellation that lands inside an aiosqlite query can leave the
            # driver's connection close pending for ever, and SIGTERM must still end serve.
            done, _ = await asyncio.wait({demo_task}, timeout=DEMO_STOP_GRACE_S)
            if not done:
                log.warning("demo_abandoned_at_shutdown", grace_s=DEMO_STOP_GRACE_S)
        if player is not None:
            await player.stop_adapters()
        await asyncio.to_thread(pool.close)
        await service.close()
        if tracing is not None:
            tracing.shutdown()  # flush the last spans to the collector


async def _seed(service: BrokerService, player: Demo) -> None:
    """Play the demo case once (an empty log only), then keep the agencies witnessing."""
    async with service.exchange.sessions() as session:
        seeded = bool(await read_entries(session, limit=1))
    if seeded:
        log.info("demo_case_already_seeded")
    else:
        result = await player.play()
        log.info("demo_case_seeded", ok=result.ok, checks=len(result.checks))
    async with player.api_client() as client:
        await asyncio.gather(*(witness_forever(rt, client, service.settings.witness_every_s)
                               for rt in player.adapters.values()))


def _announce(settings: Settings, service: BrokerService, demo: bool) -> None:
    base = f"http://{settings.http_host}:{settings.http_port}"
    try:
        ig = issue_user_token(service.exchange.broker, "dev-ig-officer", "ig_officer",
                              service.exchange.clock())
    except ConfigurationError:  # pragma: no cover - keys were loaded above
        ig = "(run `masp token --role ig_officer`)"
    print(f"""
MASP Exchange is running{' with the demo case' if demo else ''}.
  API docs           {base}/docs   (OpenAPI at {base}/openapi.json)
  health             {base}/healthz   {base}/readyz
  broker keys        {base}/.well-known/jwks.json   (agencies': {base}/v1/agency-keys)
  audit (IG officer) curl -H "Authorization: Bearer $TOKEN" {base}/v1/audit/entries
  web console        {base}/ui   (sign in by pasting $TOKEN; ops: `masp token --role ops`)
  TOKEN={ig}
Stop with Ctrl-C.
""", flush=True)
