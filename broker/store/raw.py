"""Reads on the driver connection under a session, for the hot read paths of the audit log.

SQLAlchemy's text queries cost more than the query itself when a request is a few indexed
lookups (an inclusion proof: entry, checkpoint, ~40 nodes): the bind-parameter parse per
statement text, result-row machinery and, on SQLite, a thread hop per call. These reads go
to the driver of the session's own connection instead: asyncpg (statements prepared once
per connection) or aiosqlite (``execute_fetchall``: one hop). Statements are written once
with ``?`` placeholders; PostgreSQL gets ``$1, $2, ...``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1, $2, ...`` (no ``?`` may appear in a literal)."""
    count = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)


async def fetch(session: AsyncSession, sql: str, *params: Any) -> Sequence[Sequence[Any]]:
    """Rows of ``sql`` as driver rows (asyncpg records or tuples).

    On PostgreSQL the statement joins the session's transaction only once SQLAlchemy has
    sent a statement in it (see ``fetch_locking``); for reads of the append-only log that
    makes no difference.
    """
    conn = await session.connection()
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        return await driver.fetch(numbered(sql), *params)  # type: ignore[no-any-return]
    return list(await driver.execute_fetchall(sql, params))


async def fetch_locking(session: AsyncSession, sql: str, *params: Any) -> Sequence[Sequence[Any]]:
    """Rows of ``sql`` through SQLAlchemy's connection (no ORM objects), for locking reads.

    ``fetch`` talks to the driver directly, and SQLAlchemy begins asyncpg's transaction
    lazily, at its own first statement: a ``FOR UPDATE`` sent to the driver before that
    runs in a transaction of its own and its locks are gone when it returns. This goes
    through SQLAlchemy, so it always runs inside the session's transaction.
    """
    conn = await session.connection()
    statement = numbered(sql) if conn.dialect.name == "postgresql" else sql
    return (await conn.exec_driver_sql(statement, params)).all()


async def dialect(session: AsyncSession) -> str:
    return (await session.connection()).dialect.name
