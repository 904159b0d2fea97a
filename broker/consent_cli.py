"""``masp consent``: record, withdraw and list consent decisions in the registry.

For agencies that record consent outside their case system; the same registry is fed by
``consent_change`` messages, under the same rules: the agency on whose behalf a decision is
recorded must be one the DSA names as a recorder of that kind, and a consent reference
another agency holds for the same person is refused. Every change is an audit entry;
identifiers are pseudonymised.
"""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime
from typing import Annotated

import typer
from pydantic import TypeAdapter, ValidationError

from broker.audit.entry import Actor, AuditEntry, EntryKind, SubjectRef, pseudonym
from broker.policy.consent import CATEGORIES_OF_KIND, ConsentRecord
from broker.service import BrokerService
from broker.settings import Settings
from broker.store import consent as registry
from schemas.envelope import ConsentRef

ConsentRefCode: TypeAdapter[str] = TypeAdapter(ConsentRef)

app = typer.Typer(no_args_is_help=True, help="The consent registry (P6).")

Ref = Annotated[str, typer.Option(help="consent reference cited by messages (consent_ref)")]


async def _record(rec: ConsentRecord, subject: str, kind: str, agency: str, by: str) -> str | None:
    """Record one decision; the reason it is refused, or None."""
    service = await BrokerService.open(Settings())
    try:
        exchange = service.exchange
        now = exchange.clock()
        if not exchange.bundle.may_record_consent(agency, kind, now.date()):
            return f"{agency} is not a recorder of {kind} consent under the agreements in force"
        category = sorted(CATEGORIES_OF_KIND[kind])[0]
        subjects = (SubjectRef(pseudonym=pseudonym(exchange.pseudonym_secret, subject),
                               category=category),)
        async with exchange.audit.transaction() as batch:
            holders = await registry.owners(batch.session, rec.ref, [subjects[0].pseudonym], kind)
            if holders - {agency}:
                return "the consent reference is held by another agency for this subject"
            registry.record(batch.session, rec, subject=subjects[0].pseudonym, kind=kind, at=now,
                            by=agency)
            batch.add(lambda seq: AuditEntry(
                seq=seq, kind=EntryKind.CONSENT_CHANGED, at=now,
                actor=Actor(agency=agency, user_id=by, auth="cli"), subjects=subjects,
                consent={"kind": kind, "ref": rec.ref, "status": rec.status,
                         "effective_date": rec.effective_date.isoformat()},
                policy_hash=exchange.bundle.policy_hash))
        return None
    finally:
        await service.close()


@app.command("record")
def record(
    ref: Ref,
    subject: Annotated[str, typer.Option(help="the person's identifier (stored only as a pseudonym)")],
    recipient: Annotated[list[str], typer.Option(help="agency the consent allows sharing with")],
    purpose: Annotated[list[str], typer.Option(help="purpose covered")],
    agency: Annotated[str, typer.Option(help="the agency that records it (a DSA consent recorder)")],
    message_type: Annotated[list[str] | None, typer.Option("--type", help="message type covered")] = None,
    status: Annotated[str, typer.Option(help="given or withdrawn")] = "given",
    kind: Annotated[str, typer.Option(help="victim (her consent to sharing) or intervention")] = "victim",
    effective: Annotated[str | None, typer.Option(help="YYYY-MM-DD, default today")] = None,
    by: Annotated[str | None, typer.Option(help="who records it (user id)")] = None,
) -> None:
    """Record a consent decision about one person; it governs every later flow citing REF."""
    from broker.cli import _run, fail

    if status not in ("given", "withdrawn"):
        fail("status must be given or withdrawn")
    if kind not in CATEGORIES_OF_KIND:
        fail("kind must be victim or intervention")
    try:
        ConsentRefCode.validate_python(ref)
    except ValidationError:
        fail("--ref must be a consent reference code (upper-case letters, digits, hyphens)")
    try:
        day = date.fromisoformat(effective) if effective else datetime.now(UTC).date()
    except ValueError:
        fail("--effective must be YYYY-MM-DD")
    rec = ConsentRecord(ref=ref, status=status, purposes=purpose, recipients=recipient,
                        message_types=message_type or [], effective_date=day)
    refused = _run(_record(rec, subject, kind, agency, by or getpass.getuser()))
    if refused:
        fail(f"consent not recorded: {refused}")
    typer.echo(f"consent {ref}: {status} for {', '.join(recipient)} from {day}")


@app.command("list")
def list_(ref: Annotated[str | None, typer.Option(help="only this consent reference")] = None) -> None:
    """The registry's history, oldest first (pseudonyms only)."""
    from broker.cli import _run

    async def rows() -> list[str]:
        service = await BrokerService.open(Settings())
        try:
            async with service.exchange.sessions() as s:
                return [f"{r.recorded_at:%Y-%m-%d %H:%M}  {r.consent_ref}  {r.kind or '-':<12} "
                        f"{r.status:<9} "
                        f"to {r.recipients} for {r.purposes} types {r.message_types or 'all'} "
                        f"from {r.effective_date} by {r.recorded_by}"
                        for r in await registry.history(s, ref)]
        finally:
            await service.close()

    for line in _run(rows()):
        typer.echo(line)
