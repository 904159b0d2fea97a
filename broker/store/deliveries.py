"""Delivery state queries, paused routes, safeguarding timers and notices (the SQL side).

Delivery states: ``queued`` (in the outbox) → ``published`` (in the recipient's inbox) →
``acknowledged`` | ``rejected`` (by the recipient). Off the happy path: ``dead_lettered``
(RabbitMQ gave up on it; ops may replay it, back to ``published``) and ``expired`` (not
acknowledged within the configured time; the sender gets a signed non-delivery report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.policy.escalation import Escalation
from broker.store import raw
from broker.store.delivery_models import DeliveryTimerRow, NoticeRow, RoutePauseRow
from broker.store.models import DeliveryRow

STATES = ("queued", "published", "acknowledged", "rejected", "dead_lettered", "expired")
#: States in which the recipient's application has not (yet) confirmed the delivery.
UNDELIVERED = ("queued", "published", "dead_lettered")
SETTLED = ("acknowledged", "rejected")


def utc(at: datetime) -> datetime:
    """Times are stored in UTC; SQLite hands them back without their zone."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def iso(at: datetime | None) -> str | None:
    return None if at is None else utc(at).isoformat()


def delivery_json(row: DeliveryRow, timer: DeliveryTimerRow | None = None) -> dict[str, Any]:
    """Metadata of one delivery: ids, agencies, type, state and times; never the ciphertext."""
    doc: dict[str, Any] = {
        "delivery_id": row.delivery_id, "message_id": row.message_id, "sender": row.sender,
        "recipient": row.recipient, "masp_type": row.masp_type, "state": row.state,
        "audit_seq": row.audit_seq, "created_at": iso(row.created_at),
        "published_at": iso(row.published_at), "acked_at": iso(row.acked_at)}
    if timer is not None:
        doc["escalate_at"] = iso(timer.escalate_at)
        doc["escalated_at"] = iso(timer.escalated_at)
    return doc


# --- timers -----------------------------------------------------------------------------


def schedule_escalation(session: AsyncSession, row: DeliveryRow, escalation: Escalation | None) -> None:
    """Start the safeguarding timer of a new delivery, in the transaction that creates it."""
    if escalation is None:
        return
    session.add(DeliveryTimerRow(delivery_id=row.delivery_id, escalate_at=row.created_at + escalation.after,
                                 hours=escalation.after.total_seconds() / 3600, clause=escalation.clause))


async def due_escalations(session: AsyncSession, now: datetime, limit: int = 200,
                          ) -> Sequence[tuple[DeliveryTimerRow, DeliveryRow]]:
    rows = await session.execute(
        select(DeliveryTimerRow, DeliveryRow)
        .join(DeliveryRow, col(DeliveryRow.delivery_id) == col(DeliveryTimerRow.delivery_id))
        .where(col(DeliveryTimerRow.escalate_at) <= now, col(DeliveryTimerRow.escalated_at).is_(None),
               col(DeliveryRow.state).not_in(SETTLED))
        .order_by(col(DeliveryTimerRow.escalate_at)).limit(limit))
    return [(t, d) for t, d in rows.tuples().all()]


async def overdue_deliveries(session: AsyncSession, created_before: datetime, limit: int = 200,
                             ) -> Sequence[DeliveryRow]:
    rows = await session.execute(
        select(DeliveryRow).where(col(DeliveryRow.state).in_(UNDELIVERED),
                                  col(DeliveryRow.created_at) < created_before)
        .order_by(col(DeliveryRow.created_at)).limit(limit))
    return rows.scalars().all()


async def open_alerts(session: AsyncSession, limit: int = 200,
                      ) -> Sequence[tuple[DeliveryTimerRow, DeliveryRow]]:
    """Escalated deliveries that are still not acknowledged: what ops must chase."""
    rows = await session.execute(
        select(DeliveryTimerRow, DeliveryRow)
        .join(DeliveryRow, col(DeliveryRow.delivery_id) == col(DeliveryTimerRow.delivery_id))
        .where(col(DeliveryTimerRow.escalated_at).is_not(None), col(DeliveryRow.state).not_in(SETTLED))
        .order_by(col(DeliveryTimerRow.escalated_at)).limit(limit))
    return [(t, d) for t, d in rows.tuples().all()]


async def timers_for(session: AsyncSession, delivery_ids: Sequence[str]) -> dict[str, DeliveryTimerRow]:
    if not delivery_ids:
        return {}
    rows = await session.execute(
        select(DeliveryTimerRow).where(col(DeliveryTimerRow.delivery_id).in_(delivery_ids)))
    return {t.delivery_id: t for t in rows.scalars().all()}


# --- notices ----------------------------------------------------------------------------


async def notices_for(session: AsyncSession, agency: str, kind: str | None = None,
                      limit: int = 100) -> Sequence[NoticeRow]:
    q = select(NoticeRow).where(col(NoticeRow.agency) == agency)
    if kind:
        q = q.where(col(NoticeRow.kind) == kind)
    return (await session.execute(q.order_by(col(NoticeRow.created_at)).limit(limit))).scalars().all()


# --- delivery queries -------------------------------------------------------------------


async def find_deliveries(session: AsyncSession, *, sender: str | None = None,
                          recipient: str | None = None, state: str | None = None,
                          message_id: str | None = None, limit: int = 200) -> Sequence[DeliveryRow]:
    q = select(DeliveryRow)
    for column, value in ((DeliveryRow.sender, sender), (DeliveryRow.recipient, recipient),
                          (DeliveryRow.state, state), (DeliveryRow.message_id, message_id)):
        if value is not None:
            q = q.where(col(column) == value)
    q = q.order_by(col(DeliveryRow.created_at), col(DeliveryRow.delivery_id)).limit(limit)
    return (await session.execute(q)).scalars().all()


async def state_counts(session: AsyncSession) -> dict[str, dict[str, int]]:
    """Deliveries per recipient and state, for the ops view of the outbox."""
    rows = await session.execute(
        select(col(DeliveryRow.recipient), col(DeliveryRow.state), func.count())
        .group_by(col(DeliveryRow.recipient), col(DeliveryRow.state)))
    counts: dict[str, dict[str, int]] = {}
    for recipient, state, n in rows.tuples().all():
        counts.setdefault(recipient, {})[state] = int(n)
    return counts


# --- paused routes ----------------------------------------------------------------------


async def paused_names(session: AsyncSession) -> set[str]:
    """The recipients whose route is paused now."""
    return {str(r[0]) for r in await raw.fetch(session, "SELECT recipient FROM route_pause")}


async def paused_routes(session: AsyncSession) -> Sequence[RoutePauseRow]:
    return (await session.execute(select(RoutePauseRow).order_by(col(RoutePauseRow.recipient)))
            ).scalars().all()


async def pause_route(session: AsyncSession, recipient: str, *, by: str, reason: str | None,
                      at: datetime) -> bool:
    """Pause ``recipient``; False if it was already paused."""
    if await session.get(RoutePauseRow, recipient) is not None:
        return False
    session.add(RoutePauseRow(recipient=recipient, paused_at=at, paused_by=by, reason=reason))
    return True


async def resume_route(session: AsyncSession, recipient: str) -> bool:
    """Resume ``recipient``; False if it was not paused."""
    row = await session.get(RoutePauseRow, recipient)
    if row is None:
        return False
    await session.delete(row)
    return True


@dataclass(frozen=True)
class QueuedDelivery:
    """What the outbox relay publishes of one queued delivery, with its submission's trace."""

    delivery_id: str
    message_id: str
    sender: str
    recipient: str
    masp_type: str
    jwe: str
    trace: dict[str, str]  # W3C trace headers; empty if the submission was not traced


_CLAIM = (
    "SELECT d.delivery_id, d.message_id, d.sender, d.recipient, d.masp_type, d.jwe,"
    " t.traceparent, t.tracestate FROM delivery d"
    " LEFT JOIN message_trace t ON t.message_id = d.message_id"
    " WHERE d.state = 'queued' AND d.recipient NOT IN (SELECT recipient FROM route_pause)"
    " ORDER BY d.created_at LIMIT ?")


async def claim_queued(session: AsyncSession, limit: int, *, postgres: bool) -> list[QueuedDelivery]:
    """Queued deliveries for the outbox relay's sweep, oldest first, skipping paused routes.

    One statement, with each submission's trace context, returning plain rows: ORM row
    objects (each with its ciphertext) plus a second query for the traces cost more than
    the claim itself. On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` inside the caller's
    transaction, so several relays each take different rows and none waits on another.
    SQLite runs one broker process, whose relay is a single task.
    """
    sql = _CLAIM + (" FOR UPDATE OF d SKIP LOCKED" if postgres else "")
    found = []
    rows = await raw.fetch_locking(session, sql, limit)
    for delivery_id, message_id, sender, recipient, masp_type, jwe, parent, state in rows:
        trace = {} if parent is None else {"traceparent": parent}
        if state:
            trace["tracestate"] = state
        found.append(QueuedDelivery(delivery_id, message_id, sender, recipient, masp_type, jwe, trace))
    return found


async def lock_queued(session: AsyncSession, delivery_ids: Sequence[str]) -> set[str]:
    """PostgreSQL: lock these deliveries if they are still queued and no other relay holds
    them (``FOR UPDATE SKIP LOCKED``, in the caller's transaction); the ids locked."""
    if not delivery_ids:
        return set()
    marks = ", ".join("?" * len(delivery_ids))  # placeholders only: the ids are parameters
    rows = await raw.fetch_locking(
        session, f"SELECT delivery_id FROM delivery WHERE state = 'queued' AND delivery_id IN ({marks})"  # noqa: S608
        " FOR UPDATE SKIP LOCKED", *delivery_ids)
    return {str(r[0]) for r in rows}


async def still_queued(session: AsyncSession, delivery_ids: Sequence[str]) -> set[str]:
    """SQLite: which of these deliveries are still queued (an acknowledgement over the mailbox
    may have overtaken the relay); the single broker process needs no lock."""
    if not delivery_ids:
        return set()
    rows = await session.execute(select(col(DeliveryRow.delivery_id)).where(
        col(DeliveryRow.state) == "queued", col(DeliveryRow.delivery_id).in_(list(delivery_ids))))
    return {str(r[0]) for r in rows}
