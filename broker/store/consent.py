"""The consent registry in the database: an append-only history per consent.

A consent is keyed by (``consent_ref``, subject pseudonym, kind) and belongs to the agency
that first recorded it: only that agency may record a later decision about it (given or
withdrawn), and only while the DSA names it a recorder of that kind
(``DsaBundle.may_record_consent``). Another agency citing the same reference about the same
person is refused, so knowing a reference is not enough to forge or withdraw a consent.
The newest row of a key is the decision in force. Rows written before consent was keyed by
subject and kind (``subject`` empty) are history only: no flow relies on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.policy.consent import ConsentRecord
from broker.store.models import ConsentRow
from schemas.consent_change import ConsentDecision


async def current(session: AsyncSession, ref: str, subject: str, kind: str) -> ConsentRecord | None:
    """The decision in force for one person under one consent reference, if any."""
    row = (await session.execute(
        select(ConsentRow).where(col(ConsentRow.consent_ref) == ref, col(ConsentRow.subject) == subject,
                                 col(ConsentRow.kind) == kind)
        .order_by(col(ConsentRow.id).desc()).limit(1))).scalar_one_or_none()
    return None if row is None else _record(row)


async def owners(session: AsyncSession, ref: str, subjects: Iterable[str], kind: str) -> set[str]:
    """The agencies that hold a consent under ``ref`` about any of ``subjects``."""
    wanted = list(subjects)
    if not wanted:
        return set()
    rows = await session.execute(
        select(col(ConsentRow.recorded_by)).where(
            col(ConsentRow.consent_ref) == ref, col(ConsentRow.subject).in_(wanted),
            col(ConsentRow.kind) == kind).distinct())
    return {r for (r,) in rows}


def record(session: AsyncSession, rec: ConsentRecord, *, subject: str, kind: str, at: datetime,
           by: str, message_id: str | None = None) -> None:
    """Add one decision about one person; the caller has checked ``by`` may record it."""
    session.add(ConsentRow(
        consent_ref=rec.ref, subject=subject, kind=kind, subjects=subject, status=rec.status,
        purposes=json.dumps(list(rec.purposes)), recipients=json.dumps(list(rec.recipients)),
        message_types=json.dumps(list(rec.message_types)), effective_date=rec.effective_date,
        recorded_at=at, recorded_by=by, message_id=message_id))


async def history(session: AsyncSession, ref: str | None = None) -> list[ConsentRow]:
    q = select(ConsentRow).order_by(col(ConsentRow.id))
    if ref:
        q = q.where(col(ConsentRow.consent_ref) == ref)
    return list((await session.execute(q)).scalars().all())


def record_from_body(ref: str, decision: ConsentDecision) -> ConsentRecord:
    """A registry record from the decision a ``consent_change`` body carries."""
    scope = decision.scope
    return ConsentRecord(
        ref=ref, status=decision.status, purposes=list(scope.purposes),
        recipients=list(scope.recipients), message_types=list(scope.message_types or ()),
        effective_date=decision.effective_date)


def _record(row: ConsentRow) -> ConsentRecord:
    return ConsentRecord(ref=row.consent_ref, status=row.status,
                         purposes=json.loads(row.purposes), recipients=json.loads(row.recipients),
                         message_types=json.loads(row.message_types),
                         effective_date=row.effective_date)
