"""``masp db upgrade`` / ``masp db current``: schema migrations (Alembic) on the configured database."""

from __future__ import annotations

import asyncio
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import DBAPIError, OperationalError

from broker.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Database schema migrations.")


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"masp: {message}", err=True)
    raise typer.Exit(code)


@app.command("upgrade")
def upgrade(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    runtime_role: Annotated[str | None, typer.Option(
        help="PostgreSQL role the broker runs as: only INSERT and SELECT on audit tables")] = None,
) -> None:
    """Upgrade the schema (idempotent); run as the schema owner before starting a new version."""
    from alembic.util import CommandError

    from broker.store import migrate
    from broker.store.db import make_engine

    async def go() -> tuple[str | None, str | None]:
        engine = make_engine(Settings().db_url)
        try:
            return await migrate.upgrade(engine, revision, runtime_role)
        finally:
            await engine.dispose()

    try:
        before, after = asyncio.run(go())
    except ValueError as exc:
        _fail(str(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(f"database not reachable or refused the change ({type(exc).__name__})", 3)
    except CommandError as exc:
        _fail(f"cannot upgrade to {revision!r}: {exc}")
    if before == after:
        typer.echo(f"database already at {after}")
    else:
        typer.echo(f"database upgraded from {before or 'empty'} to {after}")


@app.command("current")
def current() -> None:
    """Print the database's revision and the newest revision this version knows."""
    from broker.store import migrate
    from broker.store.db import make_engine

    async def go() -> str | None:
        engine = make_engine(Settings().db_url)
        try:
            return await migrate.current(engine)
        finally:
            await engine.dispose()

    try:
        rev = asyncio.run(go())
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(f"database not reachable ({type(exc).__name__})", 3)
    head = migrate.head()
    state = "up to date" if rev == head else "needs `masp db upgrade`"
    typer.echo(f"{rev or 'empty'} (head {head}): {state}")
