"""Single-use agency assertions: each ``jti`` recorded once, and forgotten once it is dead.

An agency authenticates every HTTP request with a fresh signed assertion (docs/spec/); its
``jti`` goes into ``used_assertion`` so the same assertion is refused a second time. A row is
needed only while its assertion could still be accepted: ``wire.verify_agency_auth`` refuses
an assertion whose ``exp`` has passed before its ``jti`` is ever looked up, so after that the
row guards nothing. Another broker process's clock may run behind this one's, by up to the
allowed skew, so a row goes only once its ``exp`` plus that skew is past.

Pruning is opportunistic, so it needs no timer and runs in every process that records
assertions: the first insert after start and every ``every``-th insert after that delete at
most ``batch`` dead rows, oldest first (the ``expires_at`` index). A batch several times
``every`` lets a backlog (a table from before pruning) drain while the table stays small.
The runtime role has DELETE on this working table (``db.runtime_grants``); only the audit
tables are INSERT/SELECT-only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from broker.store.models import UsedAssertionRow

log = structlog.get_logger("masp.store")

#: Inserts between two prunes, per process.
PRUNE_EVERY = 256
#: Rows one prune deletes at most: one short statement, whatever the backlog.
PRUNE_BATCH = 1024


class UsedAssertions:
    """The ``used_assertion`` table as the HTTP edge uses it: spend a ``jti``, prune the dead."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, skew: timedelta,
                 every: int = PRUNE_EVERY, batch: int = PRUNE_BATCH) -> None:
        self._sessions = sessions
        self._skew = skew
        self._every = every
        self._batch = batch
        self._inserts = 0

    async def spend(self, jti: str, agency: str, expires_at: datetime, now: datetime) -> bool:
        """Record ``jti`` as used; False if it was used before (nothing is written then)."""
        try:
            async with self._sessions() as session, session.begin():
                session.add(UsedAssertionRow(jti=jti, agency=agency, expires_at=expires_at))
        except IntegrityError:
            return False
        self._inserts += 1
        if (self._inserts - 1) % self._every == 0:  # the first insert after start, then every n-th
            await self._prune_quietly(now)
        return True

    async def prune(self, now: datetime) -> int:
        """Delete up to one batch of rows whose assertion can no longer be accepted anywhere."""
        cutoff = now - self._skew
        dead = (select(col(UsedAssertionRow.jti)).where(col(UsedAssertionRow.expires_at) < cutoff)
                .order_by(col(UsedAssertionRow.expires_at)).limit(self._batch))
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(UsedAssertionRow).where(col(UsedAssertionRow.jti).in_(dead)))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _prune_quietly(self, now: datetime) -> None:
        """Prune after an insert: a failure is logged and left for the next turn, never turned
        into a refusal of the request whose assertion was just (successfully) recorded."""
        try:
            count = await self.prune(now)
        except SQLAlchemyError as exc:
            log.warning("used_assertions_prune_failed", error=type(exc).__name__)
            return
        if count:
            log.debug("used_assertions_pruned", count=count)
