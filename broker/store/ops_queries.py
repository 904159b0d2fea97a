"""Read-only queries behind the ops view: audit head, unacknowledged and overdue deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.store.models import CheckpointRow, DeliveryRow

#: Delivered to RabbitMQ or waiting to be, and not yet acknowledged by the recipient.
AWAITING_ACK = ("queued", "published")


def aware(at: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def audit_head(session: AsyncSession) -> tuple[int, datetime] | None:
    """Size of the audit log and the time of its latest checkpoint."""
    row = (await session.execute(
        select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1))).scalar_one_or_none()
    return None if row is None else (row.size, aware(row.at))


async def awaiting_ack(session: AsyncSession, created_before: datetime | None = None) -> dict[str, int]:
    """Unacknowledged deliveries per recipient (only those created before ``created_before``)."""
    q = (select(col(DeliveryRow.recipient), func.count())
         .where(col(DeliveryRow.state).in_(AWAITING_ACK)).group_by(col(DeliveryRow.recipient)))
    if created_before is not None:
        q = q.where(col(DeliveryRow.created_at) < created_before)
    return {str(r): int(n) for r, n in (await session.execute(q)).all()}


async def overdue(session: AsyncSession, created_before: datetime, *, recipient: str | None = None,
                  limit: int = 200) -> Sequence[DeliveryRow]:
    """Unacknowledged deliveries created before ``created_before``, oldest first."""
    q = select(DeliveryRow).where(col(DeliveryRow.state).in_(AWAITING_ACK),
                                  col(DeliveryRow.created_at) < created_before)
    if recipient is not None:
        q = q.where(col(DeliveryRow.recipient) == recipient)
    q = q.order_by(col(DeliveryRow.created_at)).limit(limit)
    return (await session.execute(q)).scalars().all()


async def throughput(session: AsyncSession, since: datetime, until: datetime, buckets: int,
                     ) -> list[tuple[datetime, int, int]]:
    """Deliveries created and acknowledged per time bucket between ``since`` and ``until``.

    Reads two timestamp columns only (never the ciphertext); a bucket with nothing is 0.
    """
    width = (until - since) / buckets
    created = [0] * buckets
    acked = [0] * buckets

    def bucket(at: datetime | None) -> int | None:
        if at is None:
            return None
        i = int((aware(at) - since) / width)
        return i if 0 <= i < buckets else None

    q = (select(col(DeliveryRow.created_at), col(DeliveryRow.acked_at))
         .where((col(DeliveryRow.created_at) >= since) | (col(DeliveryRow.acked_at) >= since)))
    for made, ack in (await session.execute(q.limit(100_000))).all():
        if (i := bucket(made)) is not None:
            created[i] += 1
        if (i := bucket(ack)) is not None:
            acked[i] += 1
    return [(since + width * i, created[i], acked[i]) for i in range(buckets)]


def recent_window(now: datetime, minutes: int) -> tuple[datetime, datetime]:
    """The last ``minutes`` up to ``now``, aligned to whole minutes so buckets are stable."""
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return end - timedelta(minutes=minutes), end
