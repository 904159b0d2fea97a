"""Engine set-up for SQLite (aiosqlite) and PostgreSQL (asyncpg), schema creation, runtime grants."""

from __future__ import annotations

import re

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel import SQLModel

from broker.store import audit_models, delivery_models, models, trace_context  # noqa: F401  (registers the tables)

#: Tables whose rows are never changed or removed once committed.
AUDIT_TABLES = ("audit_entry", "audit_subject", "audit_checkpoint", "audit_node", "audit_cosignature")

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


async def create_schema(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration: tables, append-only triggers (idempotent).

    The triggers (docs/architecture.md) live in the migrations, in ``broker/store/migrations``.
    """
    from broker.store.migrate import upgrade  # migrate imports this module

    await upgrade(engine)


def runtime_grants(role: str) -> list[str]:
    """PostgreSQL grants for the role the broker runs as: INSERT and SELECT only on the audit tables.

    The schema owner (who runs ``create_schema``) is another role; the runtime role can then
    neither change audit rows nor drop the triggers that would refuse it anyway.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError("role name must be a lower-case SQL identifier")
    working = [t for t in SQLModel.metadata.tables if t not in AUDIT_TABLES]
    return [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON {', '.join(AUDIT_TABLES)} FROM {role}",
        f"GRANT SELECT, INSERT ON {', '.join(AUDIT_TABLES)} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(sorted(working))} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


__all__ = ["AUDIT_TABLES", "Engine", "create_schema", "is_postgres", "make_engine", "runtime_grants",
           "sessionmaker"]
