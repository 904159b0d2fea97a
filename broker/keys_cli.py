"""``masp keys rotate`` / ``masp keys revoke``: key lifecycle, each change written to the audit log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.crypto import rotation
from broker.crypto.keys import AGENCIES, BROKER
from broker.crypto.lifecycle import REVOKE_REASONS
from broker.errors import MaspError
from broker.settings import Settings

Operator = Annotated[str | None, typer.Option("--by", help="operator id recorded in the audit entry")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"masp: {message}", err=True)
    raise typer.Exit(code)


async def _audit(settings: Settings, kind: EntryKind, agency: str, reason: str, by: str | None) -> int:
    from broker.service import BrokerService

    service = await BrokerService.open(settings)
    try:
        exchange = service.exchange
        at = exchange.clock()
        actor = Actor(user_id=by, role="admin" if by else None, auth="system")
        async with exchange.audit.transaction() as batch:
            entry = batch.add(lambda seq: AuditEntry(seq=seq, kind=kind, at=at, actor=actor, sender=agency,
                                                     reason=reason))
        return entry.seq
    finally:
        await service.close()


def _record(settings: Settings, kind: EntryKind, agency: str, reason: str, by: str | None) -> None:
    try:
        asyncio.run(_audit(settings, kind, agency, reason, by))
    except (MaspError, OSError, ConnectionError, SQLAlchemyError) as exc:
        _fail(f"the key change is in effect, but its audit entry could not be written "
              f"({type(exc).__name__}); run the command again once the database is reachable", 3)


def rotate(
    agency: Annotated[str, typer.Argument(help="police, probation, nhs or advocacy")],
    overlap: Annotated[float, typer.Option(help="hours the replaced keys still verify")] = 24.0,
    by: Operator = None,
) -> None:
    """New signing and encryption keys; the replaced ones keep verifying for the overlap window."""
    if agency == BROKER:
        # the broker's signing key also signs audit checkpoints, and verification pins one key
        _fail("rotating the broker's own keys is not supported yet (audit checkpoints are verified "
              "against one broker key); rotate an agency's keys")
    if agency not in AGENCIES:
        _fail(f"unknown agency {agency!r}; one of {', '.join(AGENCIES)}")
    settings = Settings()
    now = datetime.now(UTC)
    try:
        done = rotation.rotate(settings.keys_dir, agency, now, timedelta(hours=overlap))
    except MaspError as exc:
        _fail(f"{exc.title}: {exc.detail}")
    reason = (f"{done.retiring['sig']} -> {done.new['sig']}, {done.retiring['enc']} -> {done.new['enc']}; "
              f"replaced keys verify until {done.until:%Y-%m-%dT%H:%M:%SZ}")
    _record(settings, EntryKind.KEY_ROTATED, agency, reason, by)
    typer.echo(f"{agency}: new keys {done.new['sig']}, {done.new['enc']}; "
               f"{done.retiring['sig']}, {done.retiring['enc']} retire at {done.until:%Y-%m-%dT%H:%M:%SZ}")
    typer.echo(f"restart the {agency} adapter before then so it signs with the new key", err=True)


def revoke(
    kid: Annotated[str, typer.Argument(help="the key id, e.g. police-sig-20261121")],
    reason: Annotated[str, typer.Option(help=", ".join(REVOKE_REASONS))] = "compromised",
    by: Operator = None,
) -> None:
    """Refuse the key from now on, everywhere that reads this key directory; audited."""
    settings = Settings()
    try:
        rotation.revoke(settings.keys_dir, kid, datetime.now(UTC), reason)
        current = rotation.is_current(settings.keys_dir, kid)
    except MaspError as exc:
        _fail(f"{exc.title}: {exc.detail}")
    agency = kid.split("-", 1)[0]
    _record(settings, EntryKind.KEY_REVOKED, agency, f"{kid} revoked: {reason}", by)
    typer.echo(f"{kid} revoked")
    if current:
        typer.echo(f"{kid} was a current key: run `masp keys rotate {agency}` now", err=True)
