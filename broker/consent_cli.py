"""``masp consent``: record, withdraw and list consent decisions in the registry.

For agencies that record consent outside their case system; the same registry is fed by
``consent_change`` messages. Every change is an audit entry; identifiers are pseudonymised.
"""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime
from typing import Annotated

import typer

from broker.audit.entry import Actor, AuditEntry, EntryKind, SubjectRef, pseudonym
from broker.policy.consent import ConsentRecord
from broker.service import BrokerService
from broker.settings import Settings
from broker.store import consent as registry

app = typer.Typer(no_args_is_help=True, help="The consent registry (P6).")

Ref = Annotated[str, typer.Option(help="consent reference cited by messages (consent_ref)")]


async def _record(rec: ConsentRecord, subject: str, category: str, by: str) -> None:
    service = await BrokerService.open(Settings())
    try:
        exchange = service.exchange
        now = exchange.clock()
        subjects = (SubjectRef(pseudonym=pseudonym(exchange.pseudonym_secret, subject),
                               category=category),)
        async with exchange.audit.transaction() as batch:
            registry.record(batch.session, rec, subjects=[s.pseudonym for s in subjects], at=now, by=by)
            batch.add(lambda seq: AuditEntry(
                seq=seq, kind=EntryKind.CONSENT_CHANGED, at=now,
                actor=Actor(user_id=by, auth="cli"), subjects=subjects,
                consent={"ref": rec.ref, "status": rec.status,
                         "effective_date": rec.effective_date.isoformat()},
                policy_hash=exchange.bundle.policy_hash))
    finally:
        await service.close()


@app.command("record")
def record(
    ref: Ref,
    subject: Annotated[str, typer.Option(help="the person's identifier (stored only as a pseudonym)")],
    recipient: Annotated[list[str], typer.Option(help="agency the consent allows sharing with")],
    purpose: Annotated[list[str], typer.Option(help="purpose covered")],
    message_type: Annotated[list[str] | None, typer.Option("--type", help="message type covered")] = None,
    status: Annotated[str, typer.Option(help="given or withdrawn")] = "given",
    category: Annotated[str, typer.Option(help="subject category")] = "victim",
    effective: Annotated[str | None, typer.Option(help="YYYY-MM-DD, default today")] = None,
    by: Annotated[str | None, typer.Option(help="who records it (user id)")] = None,
) -> None:
    """Record a consent decision; it governs every later flow citing REF."""
    from broker.cli import _run, fail

    if status not in ("given", "withdrawn"):
        fail("status must be given or withdrawn")
    try:
        day = date.fromisoformat(effective) if effective else datetime.now(UTC).date()
    except ValueError:
        fail("--effective must be YYYY-MM-DD")
    rec = ConsentRecord(ref=ref, status=status, purposes=purpose, recipients=recipient,
                        message_types=message_type or [], effective_date=day)
    _run(_record(rec, subject, category, by or getpass.getuser()))
    typer.echo(f"consent {ref}: {status} for {', '.join(recipient)} from {day}")


@app.command("list")
def list_(ref: Annotated[str | None, typer.Option(help="only this consent reference")] = None) -> None:
    """The registry's history, oldest first (pseudonyms only)."""
    from broker.cli import _run

    async def rows() -> list[str]:
        service = await BrokerService.open(Settings())
        try:
            async with service.exchange.sessions() as s:
                return [f"{r.recorded_at:%Y-%m-%d %H:%M}  {r.consent_ref}  {r.status:<9} "
                        f"to {r.recipients} for {r.purposes} types {r.message_types or 'all'} "
                        f"from {r.effective_date} by {r.recorded_by}"
                        for r in await registry.history(s, ref)]
        finally:
            await service.close()

    for line in _run(rows()):
        typer.echo(line)
