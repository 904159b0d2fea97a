"""End-to-end benchmark: the whole pipeline beside raw RabbitMQ, in one run (``masp bench``).

One police referral per message, submitted over AMQP by the police adapter runtime; the
broker (its own process or processes) decrypts, verifies, evaluates the DSA, audits and
seals a presentation to probation and to the NHS team (advocacy is refused and that is
audited too); both recipient adapters decrypt, verify, hand over and acknowledge; the
broker audits the acknowledgements. A message is *done* when both recipients have
verified and handed it over; the run is over when every acknowledgement is audited.

Everything lives under a unique namespace and a fresh database (a SQLite file, or a new
PostgreSQL database on the server ``--database-url`` names), removed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import psutil
from sqlalchemy import func, select
from sqlmodel import col

from adapters.runtime import AdapterRuntime
from adapters.submitter import AmqpSubmitter
from bench.raw import run_raw_bench
from bench.stats import Latencies, ServerCpu, cpu_seconds, listening_process
from broker import wire
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.demo.run import demo_body
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.store.audit_export import verify_database
from broker.store.models import DeliveryRow
from broker.transport import topology
from broker.worker_pool import worker_processes

RECIPIENTS = ("probation", "nhs")
SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Options:
    amqp_url: str
    database_url: str | None = None  # a PostgreSQL server to create a fresh database on
    count: int = 2000
    workers: int = 1
    low_load: int = 100
    warmup: int = 30
    window: int = 64
    windows: int = 5  # cost measured over this many equal slices of the saturation run
    profile: Path | None = None  # write a pyinstrument profile of each broker process here


@dataclass
class Slice:
    messages: int  # messages done at the end of this slice
    msgs_per_s: float
    broker_cpu_ms_per_msg: float
    adapters_cpu_ms_per_msg: float


@dataclass
class Tracker:
    """When each message was submitted and when each recipient handed it over."""

    submitted: dict[str, float] = field(default_factory=dict)
    receipted: dict[str, float] = field(default_factory=dict)  # the broker's signed receipt came back
    handed: dict[str, dict[str, float]] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)
    on_done: Callable[[], None] | None = None

    async def delivered(self, delivery: wire.Delivery, recipient: str) -> None:
        seen = self.handed.setdefault(delivery.message_id, {})
        seen[recipient] = time.perf_counter()
        if len(seen) == len(RECIPIENTS):
            fut = self.waiters.pop(delivery.message_id, None)
            if fut is not None and not fut.done():
                fut.set_result(max(seen.values()))
            if self.on_done is not None:
                self.on_done()

    def latency(self, message_id: str) -> float:
        return max(self.handed[message_id].values()) - self.submitted[message_id]


async def _handed(tracker: Tracker, agency: str, delivery: wire.Delivery) -> None:
    await tracker.delivered(delivery, agency)


async def _database(opts: Options, workdir: Path) -> tuple[str, Callable[[], Any] | None]:
    if opts.database_url is None or opts.database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(opts.database_url).set(drivername="postgresql")
    admin_url = server.set(database="postgres").render_as_string(hide_password=False)
    name = f"masp_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    return server.set(drivername="postgresql+asyncpg", database=name).render_as_string(
        hide_password=False), drop


async def run_e2e_bench(opts: Options, workdir: Path) -> dict[str, Any]:
    if opts.workers > 1 and (opts.database_url is None or opts.database_url.startswith("sqlite")):
        raise ValueError("several broker workers need PostgreSQL (--database-url)")
    url, drop = await _database(opts, workdir)
    dsa_dir = Settings().dsa_dir if Settings().dsa_dir.is_dir() else REPO / "deploy" / "dsa"
    settings = Settings(state_dir=workdir / "state", database_url=url, amqp_url=opts.amqp_url,
                        dsa_dir=dsa_dir, namespace=f"bench{uuid.uuid4().hex[:10]}.",
                        deployment="bench", log_level="WARNING", timer_interval_s=3600,
                        ops_sample_s=3600, rate_limit="")  # the pipeline's capacity, not the limit
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)  # schema once, before the workers race for it
    try:
        registry = KeyRegistry.from_public_dir(settings.keys_dir)
        police = AdapterRuntime(AgencyKeys.load(settings.keys_dir, "police"), registry,
                                workdir / "adapters" / "police", names=service.names)
        body = demo_body("case_referral")

        def compose() -> tuple[str, str]:
            mid = wire.new_id()
            _, jwe = police.compose("case_referral", body, case_id="BENCH-1",
                                    purpose="risk_management", subjects=SUBJECTS, jti=mid)
            return mid, jwe

        raw = await run_raw_bench(opts.amqp_url, message_bytes=len(compose()[1]), count=opts.count)
        profile = str(opts.profile) if opts.profile else None
        with worker_processes(settings.model_dump_json(), opts.workers, profile=profile) as brokers:
            result = await _pipeline(opts, settings, service, police, registry, compose, brokers,
                                     workdir)
        report = await verify_database(service)
        result["audit_verified"] = report.ok
    finally:
        await service.close()
        cleanup = await aio_pika.connect(opts.amqp_url)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)
        if drop is not None:
            await drop()
    return _report(opts, raw, result, url)


async def _pipeline(opts: Options, settings: Settings, service: BrokerService,
                    police: AdapterRuntime, registry: KeyRegistry,
                    compose: Callable[[], tuple[str, str]],
                    brokers: list[psutil.Process], workdir: Path) -> dict[str, Any]:
    me = psutil.Process()
    tracker = Tracker()
    connection = await aio_pika.connect_robust(opts.amqp_url)
    receivers = []
    for agency in RECIPIENTS:
        rt = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry,
                            workdir / "adapters" / agency, names=service.names,
                            on_delivery=partial(_handed, tracker, agency))
        await rt.start(connection, prefetch=opts.window)
        receivers.append(rt)
    submitter = AmqpSubmitter(connection, service.names, "police")
    await submitter.start()
    peak = {"broker": 0.0, "adapters": 0.0}

    async def sample_rss() -> None:
        while True:
            peak["broker"] = max(peak["broker"], *(p.memory_info().rss / 2**20 for p in brokers))
            peak["adapters"] = max(peak["adapters"], me.memory_info().rss / 2**20)
            await asyncio.sleep(0.2)

    async def one() -> None:
        mid, jwe = compose()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        tracker.waiters[mid] = fut
        tracker.submitted[mid] = time.perf_counter()
        reply = await submitter.submit(jwe)
        tracker.receipted[mid] = time.perf_counter()
        if "audit_seq" not in reply:
            raise RuntimeError(f"the broker refused a benchmark message: {reply.get('title')}")
        await asyncio.wait_for(fut, 120)

    sampler = asyncio.create_task(sample_rss())
    try:
        for _ in range(opts.warmup):
            await one()
        low_ids_start = len(tracker.submitted)
        for _ in range(opts.low_load):
            await one()
        low_ids = list(tracker.submitted)[low_ids_start:]
        low = Latencies.of(tracker.latency(m) for m in low_ids)
        receipt_low = Latencies.of(tracker.receipted[m] - tracker.submitted[m] for m in low_ids)
        before = len(tracker.submitted)

        slices: list[Slice] = []
        step = max(1, opts.count // opts.windows)
        mark = {"t": time.perf_counter(), "b": cpu_seconds(brokers), "a": cpu_seconds([me]), "n": 0}
        done = {"n": 0}

        def slice_done() -> None:
            done["n"] += 1
            if done["n"] % step == 0:
                now, b, a = time.perf_counter(), cpu_seconds(brokers), cpu_seconds([me])
                n = done["n"] - int(mark["n"])
                slices.append(Slice(done["n"], n / (now - mark["t"]),
                                    (b - mark["b"]) * 1000 / n, (a - mark["a"]) * 1000 / n))
                mark.update(t=now, b=b, a=a, n=done["n"])

        gate = asyncio.Semaphore(opts.window)

        async def gated() -> None:
            async with gate:
                await one()

        tracker.on_done = slice_done
        servers = {"rabbitmq": ServerCpu(listening_process(urlsplit(opts.amqp_url).port or 5672))}
        if settings.db_url.startswith("postgresql"):
            servers["database"] = ServerCpu(listening_process(urlsplit(settings.db_url).port or 5432))
        for server in servers.values():
            server.start()
        started = mark["t"] = time.perf_counter()
        cpu0 = cpu_seconds(brokers), cpu_seconds([me])
        mark.update(b=cpu0[0], a=cpu0[1])
        await asyncio.gather(*(gated() for _ in range(opts.count)))
        delivered_s = time.perf_counter() - started
        total = len(tracker.submitted)
        await _all_acknowledged(service, total * len(RECIPIENTS))
        elapsed = time.perf_counter() - started
        cpu1 = cpu_seconds(brokers), cpu_seconds([me])
        server_s = {name: server.seconds() for name, server in servers.items()}
        sat = Latencies.of(tracker.latency(m) for m in list(tracker.submitted)[before:])
    finally:
        sampler.cancel()
        await submitter.close()
        for rt in receivers:
            await rt.stop()
        await connection.close()
    return {"low": low, "saturation": sat, "receipt_low": receipt_low, "elapsed_s": elapsed,
            "delivered_s": delivered_s,
            "broker_cpu_s": cpu1[0] - cpu0[0], "adapters_cpu_s": cpu1[1] - cpu0[1],
            "peak_rss_mb": peak["broker"], "adapters_peak_rss_mb": peak["adapters"],
            "slices": slices, "messages": total, "server_cpu_s": server_s}


async def _all_acknowledged(service: BrokerService, expected: int, timeout: float = 300.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        async with service.exchange.sessions() as session:
            acked = (await session.execute(select(func.count()).select_from(DeliveryRow).where(
                col(DeliveryRow.state) == "acknowledged"))).scalar_one()
        if acked >= expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"only {acked} of {expected} deliveries were acknowledged")


def _report(opts: Options, raw: Any, r: dict[str, Any], url: str) -> dict[str, Any]:
    msgs = opts.count / r["elapsed_s"]
    disclosures = msgs * len(RECIPIENTS)
    return {
        "suite": "e2e",
        "backend": "postgres" if url.startswith("postgresql") else "sqlite",
        "workers": opts.workers, "count": opts.count, "message_bytes": raw.message_bytes,
        "raw_msgs_per_s": round(raw.msgs_per_s, 1),
        "raw_p50_ms_low_load": round(raw.low_load.p50, 2),
        "raw_latency_ms": {"low_load": asdict(raw.low_load), "saturation": asdict(raw.saturation)},
        "e2e_msgs_per_s": round(msgs, 1),
        "e2e_disclosures_per_s": round(disclosures, 1),
        "ratio": round(disclosures / raw.msgs_per_s, 3),
        "p50_ms_low_load": round(r["low"].p50, 2),
        "latency_ms": {"low_load": asdict(r["low"]), "saturation": asdict(r["saturation"]),
                       "receipt_low_load": asdict(r["receipt_low"])},
        "broker_cpu_s_per_msg": round(r["broker_cpu_s"] / opts.count, 5),
        "adapters_cpu_s_per_msg": round(r["adapters_cpu_s"] / opts.count, 5),
        **_budget(opts, raw, r),
        "peak_rss_mb": round(r["peak_rss_mb"], 1),
        "adapters_peak_rss_mb": round(r["adapters_peak_rss_mb"], 1),
        "cost_by_size": [asdict(s) for s in r["slices"]],
        "messages_total": r["messages"],
        "audit_verified": r["audit_verified"],
        "conditions": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
    }


def _budget(opts: Options, raw: Any, r: dict[str, Any]) -> dict[str, Any]:
    """CPU per message of every process on the path, and what that allows on this machine.

    RabbitMQ's CPU is read from its local server process (and PostgreSQL's from its backends
    when the run uses it); None where a server is not local or not readable. The bound is
    the machine's cores divided by the CPU one message costs all of them together: no
    arrangement of the same work on these cores can go faster.
    """
    per_msg = {name: None if s is None else round(s / opts.count, 5)
               for name, s in r["server_cpu_s"].items()}
    rabbit = per_msg.get("rabbitmq")
    total = (r["broker_cpu_s"] + r["adapters_cpu_s"]) / opts.count + sum(
        v for v in per_msg.values() if v is not None)
    cores = os.cpu_count() or 1
    return {
        "rabbitmq_cpu_s_per_msg": rabbit,
        "raw_rabbitmq_cpu_s_per_msg": None if raw.rabbitmq_cpu_s_per_msg is None
        else round(raw.rabbitmq_cpu_s_per_msg, 6),
        "database_cpu_s_per_msg": per_msg.get("database"),
        "total_cpu_s_per_msg": round(total, 5),
        "cpu_bound_msgs_per_s": round(cores / total, 1) if total > 0 else None,
    }


def format_report(r: dict[str, Any]) -> str:
    low, sat = r["latency_ms"]["low_load"], r["latency_ms"]["saturation"]
    raw_low, raw_sat = r["raw_latency_ms"]["low_load"], r["raw_latency_ms"]["saturation"]
    lines = [
        f"raw aio-pika ({r['message_bytes']} B, persistent, confirms, quorum queue): "
        f"{r['raw_msgs_per_s']:,.0f} msgs/s; p50/p95/p99 low load "
        f"{raw_low['p50']:.2f}/{raw_low['p95']:.2f}/{raw_low['p99']:.2f} ms, saturation "
        f"{raw_sat['p50']:.1f}/{raw_sat['p95']:.1f}/{raw_sat['p99']:.1f} ms",
        f"pipeline ({r['backend']}, {r['workers']} worker(s), {r['count']} referrals, 2 recipients each): "
        f"{r['e2e_msgs_per_s']:,.0f} msgs/s, {r['e2e_disclosures_per_s']:,.0f} disclosures/s "
        f"(ratio {r['ratio']:.2f} of raw)",
        f"  latency p50/p95/p99 low load {low['p50']:.1f}/{low['p95']:.1f}/{low['p99']:.1f} ms, "
        f"saturation {sat['p50']:.0f}/{sat['p95']:.0f}/{sat['p99']:.0f} ms; signed receipt p50 at low load "
        f"{r['latency_ms']['receipt_low_load']['p50']:.1f} ms",
        f"  CPU per message: broker {r['broker_cpu_s_per_msg'] * 1000:.2f} ms, adapters "
        f"{r['adapters_cpu_s_per_msg'] * 1000:.2f} ms; peak RSS broker {r['peak_rss_mb']:.0f} MB, "
        f"adapters {r['adapters_peak_rss_mb']:.0f} MB",
        f"  CPU per message on the whole path {r['total_cpu_s_per_msg'] * 1000:.2f} ms (RabbitMQ "
        + _ms(r["rabbitmq_cpu_s_per_msg"]) + ", against " + _ms(r["raw_rabbitmq_cpu_s_per_msg"])
        + " per raw message; database " + ("in the broker's" if r["backend"] == "sqlite"
                                          else _ms(r["database_cpu_s_per_msg"]))
        + f"): at most {r['cpu_bound_msgs_per_s'] or 0:,.0f} msgs/s on {r['conditions']['cpus']} CPUs",
        "  cost by size: " + ", ".join(
            f"{s['messages']}: {s['msgs_per_s']:.0f}/s {s['broker_cpu_ms_per_msg']:.2f} ms"
            for s in r["cost_by_size"]),
        f"  audit log verified: {r['audit_verified']}; load average {r['conditions']['load_avg_1m']}"
        f" on {r['conditions']['cpus']} CPUs",
    ]
    return "\n".join(lines)


def _ms(seconds: float | None) -> str:
    return "not measured" if seconds is None else f"{seconds * 1000:.2f} ms"
