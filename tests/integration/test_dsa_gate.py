"""A broker refuses to open on DSA files lint refuses, before it touches anything (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from broker.policy import DsaRejected
from broker.service import BrokerService, init_state
from tests.dsa_fixtures import ADDED_CLAUSE, SAMPLE, overlapping_dsa_dir
from tests.integration.conftest import make_settings


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def _tables(database_url: str) -> list[str]:
    """Tables of the test's own database: none until a broker has opened it."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.split(":///", 1)[1])
        if not path.exists():
            return []
        with closing(sqlite3.connect(path)) as db:
            return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    con = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await con.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    finally:
        await con.close()
    return sorted(r["table_name"] for r in rows)


async def test_broker_refuses_to_open_on_an_overlapping_clause(tmp_path: Path, database_url: str) -> None:
    dsa = overlapping_dsa_dir(tmp_path / "dsa")
    settings = make_settings(tmp_path, database_url).model_copy(update={"dsa_dir": dsa})
    init_state(settings, datetime.now(UTC).date())  # keys exist: the refusal is the DSA's alone
    state_before = _files(settings.state_dir)

    with pytest.raises(DsaRejected) as info:
        await BrokerService.open(settings)

    findings = info.value.findings
    assert [(f.rule, f.severity) for f in findings] == [("clause.overlap", "error")]
    assert ADDED_CLAUSE in str(findings[0]) and "requires_consent" in str(findings[0])
    assert str(dsa) in info.value.detail
    # Nothing changed: no database created or migrated, no file written.
    assert _files(settings.state_dir) == state_before
    if database_url.startswith("sqlite"):
        assert not (tmp_path / "masp.db").exists()
    assert await _tables(database_url) == []

    # The same directory without the added clause opens: the refusal was the overlap's.
    (dsa / "aa-addendum.yaml").unlink()
    assert sorted(p.name for p in dsa.iterdir()) == [SAMPLE.name]
    service = await BrokerService.open(settings)
    try:
        assert [a.id for a in service.exchange.bundle.agreements] == ["hiow-masp"]
    finally:
        await service.close()
    assert await _tables(database_url) != []
