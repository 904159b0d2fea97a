"""Dead letters in the database (the SQL side of ``broker/transport/dead_letters.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.store.deliveries import iso
from broker.store.delivery_models import DeadLetterRow

STATES = ("pending", "replayed", "purged")


def dead_letter_json(row: DeadLetterRow) -> dict[str, Any]:
    """Metadata only: where and why it died, what it was about, how big. Never the body."""
    return {
        "id": row.dead_letter_id, "state": row.state, "queue": row.queue, "reason": row.reason,
        "death_count": row.death_count,
        "died_at": iso(row.died_at),
        "recorded_at": iso(row.recorded_at), "amqp_message_id": row.amqp_message_id,
        "delivery_id": row.delivery_id, "message_id": row.message_id, "sender": row.sender,
        "recipient": row.recipient, "masp_type": row.masp_type, "content_type": row.content_type,
        "size": row.size, "body_digest": row.body_digest, "body_kept": row.body is not None,
        "acted_at": iso(row.acted_at), "acted_by": row.acted_by,
    }


async def seen(session: AsyncSession, fingerprint: str) -> bool:
    found = await session.execute(
        select(col(DeadLetterRow.dead_letter_id)).where(col(DeadLetterRow.fingerprint) == fingerprint))
    return found.first() is not None


async def find(session: AsyncSession, *, state: str | None = None, queue: str | None = None,
               limit: int = 200) -> Sequence[DeadLetterRow]:
    q = select(DeadLetterRow)
    if state:
        q = q.where(col(DeadLetterRow.state) == state)
    if queue:
        q = q.where(col(DeadLetterRow.queue) == queue)
    q = q.order_by(col(DeadLetterRow.recorded_at), col(DeadLetterRow.dead_letter_id)).limit(limit)
    return (await session.execute(q)).scalars().all()


async def get(session: AsyncSession, dead_letter_id: str) -> DeadLetterRow | None:
    return await session.get(DeadLetterRow, dead_letter_id)


async def pending_count(session: AsyncSession) -> int:
    n = await session.execute(
        select(func.count()).select_from(DeadLetterRow).where(col(DeadLetterRow.state) == "pending"))
    return int(n.scalar_one())


async def pending_for_delivery(session: AsyncSession, delivery_id: str) -> Sequence[DeadLetterRow]:
    rows = await session.execute(select(DeadLetterRow).where(
        col(DeadLetterRow.delivery_id) == delivery_id, col(DeadLetterRow.state) == "pending"))
    return rows.scalars().all()
