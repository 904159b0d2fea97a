"""Audit log benchmark: batched appends, full verification, inclusion proofs, at scale.

Runs against a fresh database (SQLite file or a new PostgreSQL database) so figures are
repeatable; reports entries/s, verification seconds and peak RSS growth, and proof latency
percentiles for random entries.
"""

from __future__ import annotations

import random
import resource
import statistics
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from broker.audit.entry import Actor, AuditEntry, DsaRef, EntryKind, FieldDigest, SubjectRef
from broker.service import BrokerService, init_state
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
    verify_s: float
    verify_rss_growth_mb: float
    proof_p50_ms: float
    proof_p99_ms: float


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


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
                          proofs: int = 200) -> AuditBench:
    url, dbname = await _database(backend, workdir)
    settings = Settings(state_dir=workdir / "state", database_url=url, deployment="bench")
    init_state(settings, AT.date())
    service = await BrokerService.open(settings)
    try:
        audit = service.exchange.audit
        started = time.perf_counter()
        for start in range(0, entries, batch):
            async with audit.transaction() as tx:
                for _ in range(min(batch, entries - start)):
                    tx.add(_entry)
        append_s = time.perf_counter() - started

        rss_before = _rss_mb()
        started = time.perf_counter()
        report = await verify_database(service)
        verify_s = time.perf_counter() - started
        if not report.ok:
            raise RuntimeError(f"benchmark log does not verify: {report.problem}")

        rng = random.Random(7)  # noqa: S311 - which entries to prove, not a secret
        latencies = []
        for _ in range(proofs):
            seq = rng.randrange(entries)
            t0 = time.perf_counter()
            async with service.exchange.sessions() as session:
                await entry_proof(session, seq, quorum=0)
            latencies.append((time.perf_counter() - t0) * 1000)
        latencies.sort()
        return AuditBench(backend, entries, batch, entries / append_s, verify_s,
                          max(0.0, _rss_mb() - rss_before),
                          statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1])
    finally:
        await service.close()
        await _drop(dbname)


def as_dict(result: AuditBench) -> dict[str, object]:
    return asdict(result)
