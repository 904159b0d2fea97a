"""Audit log benchmark: batched appends, full verification, inclusion proofs, at scale.

Runs against a fresh database (SQLite file or a new PostgreSQL database) so figures are
repeatable; reports entries/s, verification seconds with the process's resident memory
sampled throughout, and proof latency percentiles for random entries. CPU seconds are
reported beside wall seconds (for verification including its worker processes): the machine
is shared, and the two together show how much of a figure was waiting for a core. Peak RSS
is the main process's; each worker holds at most a few pages.

The broker's start-up heap (modules, schemas, the service) is frozen out of the garbage
collector once the service is open (``settle_heap``), as ``masp serve`` and its workers do:
otherwise every full collection during a batch rescans ~110,000 start-up objects, which cost
more than the appends themselves.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil

from broker.audit.entry import Actor, AuditEntry, DsaRef, EntryKind, FieldDigest, SubjectRef
from broker.service import BrokerService, init_state, settle_heap
from broker.settings import Settings
from broker.store.audit_export import verify_database
from broker.store.audit_proofs import entry_proof

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class AuditBench:
    backend: str
    entries: int
    batch: int
    append_entries_per_s: float
    append_cpu_s: float
    verify_s: float
    verify_cpu_s: float
    verify_rss_growth_mb: float
    verify_rss_peak_mb: float
    verify_rss_peak_by_entries_mb: dict[int, float]
    proof_p50_ms: float
    proof_p95_ms: float
    proof_p99_ms: float
    load_average: tuple[float, float, float]

    def summary(self) -> str:
        by_size = ", ".join(f"{n:,}: {mb:.0f} MB" for n, mb in self.verify_rss_peak_by_entries_mb.items())
        return (f"{self.backend:<9} {self.entries} entries: append {self.append_entries_per_s:,.0f}/s "
                f"(CPU {self.append_cpu_s:.0f} s), verify {self.verify_s:.1f} s "
                f"(CPU {self.verify_cpu_s:.1f} s, "
                f"peak RSS {self.verify_rss_peak_mb:.0f} MB, +{self.verify_rss_growth_mb:.0f} MB; "
                f"peak by entries {by_size}), "
                f"proof p50 {self.proof_p50_ms:.2f} ms p95 {self.proof_p95_ms:.2f} ms "
                f"p99 {self.proof_p99_ms:.2f} ms; load {' '.join(f'{x:.1f}' for x in self.load_average)}")


def _entry(seq: int) -> AuditEntry:
    """A realistic `disclosed` entry: subjects, clause, a dozen field digests."""
    return AuditEntry(
        seq=seq, kind=EntryKind.DISCLOSED, at=AT, actor=Actor(agency="police", auth="amqp"),
        message_id=str(uuid.UUID(int=seq)), masp_type="case_referral", case_id="BENCH-1",
        sender="police", recipient="nhs",
        subjects=(SubjectRef(pseudonym=f"{seq % 997:064x}", category="suspect"),),
        dsa=DsaRef(id="hiow-masp", version=1, clause="cr-police-nhs"), purpose="risk_management",
        lawful_basis="DPA 2018 Part 3 s35(2)(b)", decision="permit_with_redaction",
        rules=("P4.minimisation", "P4.hard_rule"),
        fields_disclosed=tuple(FieldDigest(name=f"field_{i}", digest=f"{seq:022d}{i:021d}")
                               for i in range(12)),
        fields_withheld=("victim_address", "victim_phone"), classification="OFFICIAL",
        policy_hash="0" * 64, payload_digest="sha-256:" + "1" * 64)


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (verification's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


_RSS_EVERY = 200_000


class _PeakRss:
    """Samples resident memory every 50 ms while a phase runs (``ru_maxrss`` only ever rises)."""

    def __init__(self) -> None:
        self.before = self.peak = _rss_mb()
        self._task: asyncio.Task[None] | None = None
        #: peak so far when verification passed 200k, 400k, ... entries: flat memory means equal
        self.at: dict[int, float] = {}

    def progress(self, verified: int) -> None:
        self.peak = max(self.peak, _rss_mb())
        mark = verified // _RSS_EVERY * _RSS_EVERY
        if mark and mark not in self.at:
            self.at[mark] = self.peak

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, _rss_mb())
            await asyncio.sleep(0.05)

    def __enter__(self) -> _PeakRss:
        self._task = asyncio.ensure_future(self._sample())
        return self

    def __exit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        self.peak = max(self.peak, _rss_mb())


async def _database(backend: str, workdir: Path) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'bench.db'}", None
    name = f"masp_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", name


async def _drop(name: str | None) -> None:
    if name:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def run_audit_bench(backend: str, entries: int, workdir: Path, *, batch: int = 2000,
                          proofs: int = 1000) -> AuditBench:
    url, dbname = await _database(backend, workdir)
    settings = Settings(state_dir=workdir / "state", database_url=url, deployment="bench")
    init_state(settings, AT.date())
    service = await BrokerService.open(settings)
    settle_heap()  # as masp serve does
    try:
        audit = service.exchange.audit
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, entries, batch):
            async with audit.transaction() as tx:
                for _ in range(min(batch, entries - start)):
                    tx.add(_entry)
        append_s, append_cpu = time.perf_counter() - started, time.process_time() - cpu

        gc.collect()
        started, cpu = time.perf_counter(), _cpu()
        with _PeakRss() as rss:
            report = await verify_database(service, progress=rss.progress)
        verify_s, verify_cpu = time.perf_counter() - started, _cpu() - cpu
        if not report.ok:
            raise RuntimeError(f"benchmark log does not verify: {report.problem}")

        rng = random.Random(7)  # noqa: S311 - which entries to prove, not a secret
        latencies = []
        for _ in range(proofs):
            seq = rng.randrange(entries)
            t0 = time.perf_counter()
            async with service.exchange.sessions() as session:
                await entry_proof(session, seq, quorum=service.settings.witness_quorum)
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()

        def pct(p: float) -> float:
            return latencies[max(0, int(len(latencies) * p) - 1)]

        return AuditBench(backend, entries, batch, entries / append_s, append_cpu, verify_s,
                          verify_cpu, max(0.0, rss.peak - rss.before), rss.peak, rss.at,
                          statistics.median(latencies), pct(0.95), pct(0.99), os.getloadavg())
    finally:
        await service.close()
        await _drop(dbname)


def as_dict(result: AuditBench) -> dict[str, object]:
    return asdict(result)
