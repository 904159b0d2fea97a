"""Schema migrations (Alembic) on the broker's own async engines: upgrade, current revision.

Every way of getting a schema goes through here (``masp init``, ``masp db upgrade``, start-up,
tests), so the migrations are what runs everywhere, not a second path beside ``create_all``.
A database created before migrations existed (tables, no ``alembic_version``) holds exactly
the first revision's schema and is stamped with it before upgrading.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from broker.store.db import is_postgres, runtime_grants

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
#: Serialises concurrent upgrades (two broker workers starting together) on PostgreSQL.
_PG_LOCK = 0x6D617370


def alembic_config(connection: Connection | None = None, runtime_role: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["runtime_role"] = runtime_role
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if rev is None:
        raise RuntimeError("no migrations found")
    return rev


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, revision: str, runtime_role: str | None) -> tuple[str | None, str | None]:
    before = _current(conn)
    cfg = alembic_config(conn, runtime_role)
    if before is None and inspect(conn).has_table("audit_entry"):
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, revision)
    if runtime_role is not None:
        # grants cover tables later revisions added, too; GRANT is idempotent
        for stmt in runtime_grants(runtime_role):
            conn.execute(text(stmt))
    return before, _current(conn)


async def upgrade(engine: AsyncEngine, revision: str = "head",
                  runtime_role: str | None = None) -> tuple[str | None, str | None]:
    """Upgrade to ``revision``; grant the runtime role its rights if named. Returns (before, after)."""
    if runtime_role is not None:
        runtime_grants(runtime_role)  # refuses a name that is not a plain SQL identifier, before any change
        if not is_postgres(engine):
            raise ValueError("a runtime role applies to PostgreSQL only")
    async with engine.begin() as conn:
        if is_postgres(engine):
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK})"))
        return await conn.run_sync(_upgrade, revision, runtime_role)


async def current(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


__all__ = ["BASELINE", "MIGRATIONS", "alembic_config", "current", "head", "upgrade"]
