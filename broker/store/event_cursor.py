"""The case-event feed's position in the audit log (the SQL side of ``transport/events.py``)."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from broker.store.delivery_models import EventCursorRow
from broker.store.models import AuditRow

FEED = "case-events"


async def position(session: AsyncSession) -> int | None:
    row = await session.get(EventCursorRow, FEED)
    return None if row is None else row.seq


async def start(sessions: async_sessionmaker[AsyncSession]) -> int:
    """The feed's position; on its first start, just after the newest entry (events are news)."""
    async with sessions() as session:
        found = await position(session)
        if found is not None:
            return found
        head = (await session.execute(select(func.max(col(AuditRow.seq))))).scalar_one_or_none()
    seq = -1 if head is None else int(head)
    try:
        async with sessions() as session, session.begin():
            session.add(EventCursorRow(name=FEED, seq=seq))
    except IntegrityError:  # another broker process started the feed first
        async with sessions() as session:
            found = await position(session)
        return seq if found is None else found
    return seq


async def advance(sessions: async_sessionmaker[AsyncSession], old: int, new: int) -> bool:
    """Move the cursor if nobody else moved it; False means another process published these."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(EventCursorRow).where(col(EventCursorRow.name) == FEED, col(EventCursorRow.seq) == old)
            .values(seq=new))
    return bool(result.rowcount)  # type: ignore[attr-defined]
