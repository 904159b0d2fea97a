"""Audit ingress refusals as distinct events: the first of a kind at once, the rest per window.

``Exchange`` hands every ingress refusal (HTTP and AMQP alike) to ``RefusalLog.refuse``.
The first refusal of a (agency, channel, code) in a window (``MASP_REFUSAL_WINDOW_S``) is
written at once, as before; the later ones are counted in memory (``broker/audit/refusals.py``)
and written as one summary entry when the window closes, or when this process shuts down.
Summaries that are due go into the same unit of work as the next refusal written, and
otherwise a timer writes them: one transaction and one signed checkpoint for all the
summaries due together, never one per refused message.

Counting is per broker process: N processes write up to N summaries per window and key.
A process that dies without closing loses the counts it held (not the first entries); the
log then under-counts a flood, it never misses that one happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from functools import partial

import structlog

from broker.audit.entry import AuditEntry
from broker.audit.refusals import RefusalKey, RefusalSummary, RefusalWindows
from broker.store.audit_log import AuditLog

log = structlog.get_logger("masp.refusals")


class RefusalLog:
    """The refusal windows of one broker process and what writes them to its audit log.

    The audit log is the one of the ``Exchange`` that owns this (taken from its first
    refusal): the timer and ``close`` write the summaries there.
    """

    def __init__(self, window: timedelta = timedelta(seconds=60), keep_digests: int = 16) -> None:
        self.windows = RefusalWindows(window, keep_digests)
        self._audit: AuditLog | None = None
        self._timer: asyncio.Task[None] | None = None

    async def refuse(self, audit: AuditLog, key: RefusalKey, digest: str,
                     build: Callable[[int], AuditEntry], policy_hash: str | None) -> bool:
        """Record one refusal: True if ``build``'s entry was written now, False if it was counted."""
        self._audit = audit
        now = audit.clock()
        if not self.windows.note(key, digest, now, policy_hash):
            self._schedule()
            return False
        try:
            await self._write(audit, self.windows.due(now), build)
        except BaseException:
            self.windows.reopen(key)  # not on record: the next one of its kind is written in full
            raise
        return True

    async def flush(self, *, everything: bool = False) -> int:
        """Write the summaries that are due (all of them when shutting down); how many."""
        if self._audit is None:
            return 0
        summaries = self.windows.drain() if everything else self.windows.due(self._audit.clock())
        if summaries:
            await self._write(self._audit, summaries)
        return len(summaries)

    async def close(self) -> None:
        """Stop the timer and write every summary still held (``BrokerService.close``)."""
        if self._timer is not None:
            self._timer.cancel()
            with suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        try:
            await self.flush(everything=True)
        except Exception:  # the database is away: say what is lost, in numbers only
            log.exception("refusal_summaries_lost", count=self.windows.pending)

    async def _write(self, audit: AuditLog, summaries: list[RefusalSummary],
                     build: Callable[[int], AuditEntry] | None = None) -> None:
        """One unit of work: the summaries (then ``build``'s entry), one signed checkpoint.

        If it fails the summaries are kept for the next attempt; the caller sees the error.
        """
        if not summaries and build is None:
            return
        at = audit.clock()
        try:
            async with audit.transaction() as batch:
                for summary in summaries:
                    batch.add(partial(summary.entry, at=at))
                if build is not None:
                    batch.add(build)
        except BaseException:
            self.windows.restore(summaries)
            raise
        for s in summaries:
            log.info("refusals_summarised", agency=s.key.agency, via=s.key.channel, code=s.key.code,
                     count=s.count)

    def _schedule(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.create_task(self._flush_when_due(), name="refusal-summaries")

    async def _flush_when_due(self) -> None:
        """Sleep until the earliest counting window closes, write what is due, repeat."""
        while self._audit is not None and (close_at := self.windows.next_close()) is not None:
            # on the injected clock; a clock that stands still is asked again at least every window
            wait = (close_at - self._audit.clock()).total_seconds()
            await asyncio.sleep(min(max(wait, 0.0), self.windows.window.total_seconds()) + 0.01)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: keep the counts, try again next round
                log.exception("refusal_summaries_failed", count=self.windows.pending)
                await asyncio.sleep(1.0)
