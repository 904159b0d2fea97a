"""Alembic environment: runs on the connection ``broker.store.migrate`` hands over.

The broker's engines are async (aiosqlite, asyncpg); ``migrate`` opens a transaction on one
and runs Alembic inside ``run_sync``, so migrations need no second, synchronous driver.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from broker.store import db  # noqa: F401  (registers every table on SQLModel.metadata)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `masp db upgrade`, which supplies the connection")

context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
