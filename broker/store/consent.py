"""The consent registry in the database: an append-only history per ``consent_ref``."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.policy.consent import ConsentRecord
from broker.store.models import ConsentRow
from schemas.consent_change import ConsentDecision


async def current(session: AsyncSession, ref: str) -> ConsentRecord | None:
    row = (await session.execute(
        select(ConsentRow).where(col(ConsentRow.consent_ref) == ref)
        .order_by(col(ConsentRow.id).desc()).limit(1))).scalar_one_or_none()
    if row is None:
        return None
    return ConsentRecord(ref=row.consent_ref, status=row.status,
                         purposes=json.loads(row.purposes), recipients=json.loads(row.recipients),
                         message_types=json.loads(row.message_types),
                         effective_date=row.effective_date)


def record(session: AsyncSession, rec: ConsentRecord, *, subjects: list[str], at: datetime,
           by: str, message_id: str | None = None) -> None:
    session.add(ConsentRow(
        consent_ref=rec.ref, subjects=" ".join(subjects), status=rec.status,
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
