"""Alembic migrations build exactly the models' schema, with the append-only triggers, on both databases."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel
from typer.testing import CliRunner, Result

from broker.cli import app
from broker.store import migrate
from broker.store.db import AUDIT_TABLES, make_engine


@pytest.fixture
async def engine(database_url: str) -> AsyncEngine:
    eng = make_engine(database_url)
    yield eng  # type: ignore[misc]
    await eng.dispose()


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), SQLModel.metadata))


def _triggers(conn: Connection) -> set[str]:
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text(
            "SELECT tgname, tgenabled::text FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgname LIKE 'audit_%'"))
        # 'A': ENABLE ALWAYS, fires under session_replication_role = replica as well
        return {name for name, enabled in rows if enabled == "A"}
    return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")).scalars())


async def test_upgrade_from_empty_matches_models_and_refuses_audit_changes(engine: AsyncEngine) -> None:
    assert await migrate.current(engine) is None
    before, after = await migrate.upgrade(engine)
    assert (before, after) == (None, migrate.head())
    assert await migrate.current(engine) == migrate.head()
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert names == {*SQLModel.metadata.tables, "alembic_version"}
        triggers = await conn.run_sync(_triggers)
    if engine.dialect.name == "postgresql":
        assert triggers == {f"{t}_no_{k}" for t in AUDIT_TABLES for k in ("change", "truncate")}
    else:
        assert triggers == {f"{t}_no_{k}" for t in AUDIT_TABLES for k in ("update", "delete")}

    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO audit_node (level, idx, hash) VALUES (0, 0, :h)"), {"h": b"\x00" * 32})
    refusals = ["UPDATE audit_node SET hash = hash", "DELETE FROM audit_node"]
    if engine.dialect.name == "postgresql":
        refusals.append("TRUNCATE audit_node")
    for stmt in refusals:
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(stmt))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_node"))).scalar_one() == 1

    # idempotent: a second upgrade changes nothing and keeps the row
    assert await migrate.upgrade(engine) == (migrate.head(), migrate.head())
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_node"))).scalar_one() == 1


async def test_database_from_before_migrations_is_stamped_not_recreated(engine: AsyncEngine) -> None:
    # such a database holds the first revision's schema, without Alembic's version table
    await migrate.upgrade(engine, migrate.BASELINE)
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE alembic_version"))
        await conn.execute(text("INSERT INTO audit_node (level, idx, hash) VALUES (1, 2, :h)"), {"h": b"x"})
    assert await migrate.upgrade(engine) == (None, migrate.head())
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM audit_node"))).scalar_one() == 1


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_upgrade_grants_runtime_role(engine: AsyncEngine, database_url: str) -> None:
    role = f"masp_mig_{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
    try:
        await migrate.upgrade(engine, runtime_role=role)
        runtime = make_engine(database_url.replace("//postgres@", f"//{role}@"))
        try:
            async with runtime.begin() as conn:
                await conn.execute(text("INSERT INTO audit_node (level, idx, hash) VALUES (0, 0, :h)"),
                                   {"h": b"h"})
            with pytest.raises(DBAPIError, match="permission denied"):
                async with runtime.begin() as conn:
                    await conn.execute(text("UPDATE audit_node SET hash = hash"))
            with pytest.raises(DBAPIError, match="must be owner"):
                async with runtime.begin() as conn:
                    await conn.execute(text("DROP TRIGGER audit_node_no_change ON audit_node"))
        finally:
            await runtime.dispose()
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))


def _masp(*args: str, db_url: str, tmp_path: Path) -> Result:
    """The real ``masp`` command tree in process (a subprocess pays seconds of imports per call)."""
    env = {"MASP_DATABASE_URL": db_url, "MASP_STATE_DIR": str(tmp_path / "state")}
    return CliRunner().invoke(app, list(args), env=env)


def test_masp_db_upgrade_is_idempotent(database_url: str, tmp_path: Path) -> None:
    head = migrate.head()
    assert _masp("db", "current", db_url=database_url, tmp_path=tmp_path).stdout.startswith("empty")
    first = _masp("db", "upgrade", db_url=database_url, tmp_path=tmp_path)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == f"database upgraded from empty to {head}"
    again = _masp("db", "upgrade", db_url=database_url, tmp_path=tmp_path)
    assert again.exit_code == 0 and again.stdout.strip() == f"database already at {head}"
    now = _masp("db", "current", db_url=database_url, tmp_path=tmp_path)
    assert now.stdout.strip() == f"{head} (head {head}): up to date"
    bad = _masp("db", "upgrade", "nonexistent", db_url=database_url, tmp_path=tmp_path)
    assert bad.exit_code == 2
    assert bad.stderr.startswith("masp: cannot upgrade to 'nonexistent'") and bad.stderr.count("\n") == 1


async def test_runtime_role_is_checked_before_any_change(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="lower-case SQL identifier"):
        await migrate.upgrade(engine, runtime_role="masp; DROP TABLE audit_entry")
    if engine.dialect.name == "sqlite":
        with pytest.raises(ValueError, match="PostgreSQL only"):
            await migrate.upgrade(engine, runtime_role="masp_runtime")
    assert await migrate.current(engine) is None  # nothing was created
