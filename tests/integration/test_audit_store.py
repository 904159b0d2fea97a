"""The audit log in a real database: one sequencer, append-only, verifiable (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.service import BrokerService, init_state
from broker.store.audit_export import export_log, verify_database, verify_export
from broker.store.audit_log import read_entries
from tests.integration.conftest import make_settings

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> BrokerService:
    settings = make_settings(tmp_path, database_url)
    init_state(settings, AT.date())
    svc = await BrokerService.open(settings)
    yield svc  # type: ignore[misc]
    await svc.close()


async def _append(service: BrokerService, n: int, tag: str) -> None:
    async with service.exchange.audit.transaction() as batch:
        for i in range(n):
            batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                  actor=Actor(user_id=f"{tag}-{i}", auth="system")))


async def test_concurrent_batches_get_contiguous_seqs_and_verify(service: BrokerService) -> None:
    await asyncio.gather(*(_append(service, 3, f"w{w}") for w in range(12)))
    async with service.exchange.sessions() as s:
        rows = await read_entries(s)
        checkpoints = (await s.execute(text("SELECT size FROM audit_checkpoint ORDER BY size"))).all()
    assert [r.seq for r in rows] == list(range(36))
    assert [c[0] for c in checkpoints] == list(range(3, 37, 3))  # one checkpoint per batch
    report = await verify_database(service)
    assert report.ok and report.entries == 36 and report.checkpoints == 12


async def test_audit_rows_cannot_be_changed_or_deleted(service: BrokerService) -> None:
    await _append(service, 2, "x")
    for stmt in ("UPDATE audit_entry SET kind = 'refused' WHERE seq = 0",
                 "DELETE FROM audit_entry WHERE seq = 1"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with service.exchange.sessions() as s, s.begin():
                await s.execute(text(stmt))
    if service.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            async with service.exchange.sessions() as s, s.begin():
                await s.execute(text("TRUNCATE audit_entry CASCADE"))
        # replication mode does not switch ENABLE ALWAYS triggers off
        async with service.exchange.sessions() as s, s.begin():
            await s.execute(text("SET LOCAL session_replication_role = replica"))
            with pytest.raises(DBAPIError, match="append-only"):
                await s.execute(text("DELETE FROM audit_entry WHERE seq = 1"))
    async with service.exchange.sessions() as s:
        assert len(await read_entries(s)) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_export_tampering_is_named(service: BrokerService, tmp_path: Path) -> None:
    for _ in range(3):
        await _append(service, 2, "e")
    out = tmp_path / "export"
    assert await export_log(service, out) == 6
    assert verify_export(out).ok
    lines = (out / "entries.jsonl").read_text().splitlines(keepends=True)

    (out / "entries.jsonl").write_text("".join(lines[:-1]))  # the last entry deleted
    report = verify_export(out)
    assert not report.ok and report.first_bad_seq == 5

    (out / "entries.jsonl").write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    report = verify_export(out)
    assert not report.ok and report.first_bad_seq == 1

    forged = lines[4].replace('user_id\\":\\"e-0', 'user_id\\":\\"e-9')
    assert forged != lines[4]
    (out / "entries.jsonl").write_text("".join([*lines[:4], forged, lines[5]]))
    report = verify_export(out)
    assert not report.ok and report.first_bad_seq == 4
