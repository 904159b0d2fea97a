"""``masp keys rotate`` / ``masp keys revoke``: key lifecycle, each change written to the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from sqlalchemy.exc import SQLAlchemyError

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.crypto import rotation
from broker.crypto.keys import AGENCIES, BROKER
from broker.crypto.lifecycle import REVOKE_REASONS, locked
from broker.crypto.log_keys import LOG
from broker.errors import MaspError
from broker.settings import Settings

if TYPE_CHECKING:
    from broker.audit.note import NoteSigner
    from broker.store.audit_log import AuditLog

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
    agency: Annotated[str, typer.Argument(help="police, probation, nhs, advocacy, broker, or log "
                                                "(the audit log's checkpoint key)")],
    overlap: Annotated[float, typer.Option(help="hours the replaced keys still verify (the log: "
                                                "still co-sign checkpoints)")] = 24.0,
    by: Operator = None,
) -> None:
    """New keys; the replaced ones keep verifying for the overlap window. `log` hands the audit
    log to a new key through a signed rotation entry (docs/operations.md)."""
    if agency == LOG:
        _rotate_log(overlap, by)
        return
    if agency not in (*AGENCIES, BROKER):
        _fail(f"unknown key owner {agency!r}; one of {', '.join((*AGENCIES, BROKER, LOG))}")
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
    who = "every broker process" if agency == BROKER else f"the {agency} adapter"
    typer.echo(f"restart {who} before then so it signs with the new key", err=True)


def _rotate_log(overlap: float, by: str | None) -> None:
    if overlap < 0:
        _fail("the overlap window cannot be negative")
    settings = Settings()
    try:
        done = asyncio.run(_log_rotation(settings, timedelta(hours=overlap), by))
    except (MaspError, OSError, ConnectionError, SQLAlchemyError) as exc:
        detail = f"{exc.title}: {exc.detail}" if isinstance(exc, MaspError) else type(exc).__name__
        _fail(f"the audit log key was not rotated ({detail}); running the command again completes "
              "an interrupted rotation", 3)
    old, new, seq, until = done
    typer.echo(f"audit log key {old} -> {new} at entry {seq}; {old} co-signs checkpoints until "
               f"{until:%Y-%m-%dT%H:%M:%SZ}")
    typer.echo(f"give relying parties the new key now (`masp audit trust`): {new} is required from "
               f"the first checkpoint after entry {seq}", err=True)


async def _log_rotation(settings: Settings, overlap: timedelta, by: str | None
                        ) -> tuple[str, str, int, datetime]:
    """Rotate the audit log's key: pending key, rotation entry (signed by both), then current.

    The new key is recorded as pending before anything is signed and reused if the command is
    run again, so an interruption at any point is completed by running it again. The entry
    commits before the key files name the new key current: until then every process keeps
    signing with the old one (which verification accepts up to the first checkpoint after the
    entry); from then on, every process signs with both until the overlap ends.
    """
    from broker.service import AuditStore, log_keys

    store = log_keys(settings)
    with locked(settings.keys_dir):
        now = datetime.now(UTC)
        state = store.state()
        pending = store.begin_rotation(now)
        old_key = state.keys[state.current]
        old, new = store.signer(old_key.id), store.signer(pending.id)
        until = now + overlap
        store_db = await AuditStore.open(settings, append=True)
        try:
            assert store_db.audit is not None
            seq = await _rotation_entry(store_db.audit, old, new, until, by,
                                        lambda: store.start_signing(pending.id))
        finally:
            await store_db.close()
        store.finish_rotation(pending.id, until)
    return old_key.id, pending.id, seq, until


async def _rotation_entry(audit: AuditLog, old: NoteSigner, new: NoteSigner, until: datetime,
                          by: str | None, co_sign: Callable[[], None]) -> int:
    """Append the rotation statement (or find the one an interrupted run appended)."""
    from broker.audit.key_rotation import sign_rotation
    from broker.store.audit_log import find_rotation

    async with audit.sessions() as session:
        done = await find_rotation(session, new.verifier().vkey)
    if done is not None:
        co_sign()
        return done
    actor = Actor(user_id=by, role="admin" if by else None, auth="system")
    async with audit.transaction() as batch:
        at = audit.clock()
        root = batch.tree.root()
        entry = batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.LOG_KEY_ROTATED, at=at, actor=actor, reason="audit log key rotated",
            log_key_rotation=sign_rotation(audit.origin, seq, root, old, new, until)))
        co_sign()  # before the commit, under the sequencer: every later checkpoint carries the new key
        audit.keys.refresh(at, force=True)  # and so does this entry's own checkpoint
    return entry.seq


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
