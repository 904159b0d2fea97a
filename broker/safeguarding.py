"""Safeguarding timers: escalate urgent deliveries left unacknowledged, expire undelivered ones.

A sweep reads the injected clock, so tests move a ``FrozenClock`` instead of sleeping:

- escalation: a delivery with a timer (``broker/policy/escalation.py``) still not
  acknowledged at ``escalate_at`` is escalated once: an ``escalated`` audit entry (which the
  case-event feed turns into ``<sender>.delivery.escalated`` and ``ops.delivery.escalated``),
  a signed escalation notice in the sender's notices, and an ops alert until it is settled;
- expiry: a delivery not acknowledged ``delivery_expiry`` after it was accepted becomes
  ``expired``; its ciphertext is dropped (P9), the sender gets a signed non-delivery report
  and the ``expired`` audit entry records it. The relay never publishes an expired delivery.

Notices are JWS signed by the broker, ``typ`` ``masp-notice+jwt``; they hold ids, agencies,
types and states only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog

from broker import wire
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.crypto import jose
from broker.exchange import Exchange
from broker.store import dead_letters as dead_letter_store
from broker.store import deliveries as store
from broker.store.audit_log import Batch
from broker.store.delivery_models import DeliveryTimerRow, NoticeRow
from broker.store.models import DeliveryRow

log = structlog.get_logger("masp.safeguarding")
TYP_NOTICE = "masp-notice+jwt"
SYSTEM = Actor(auth="system")


@dataclass
class Sweep:
    escalated: list[str] = field(default_factory=list)  # delivery ids
    expired: list[str] = field(default_factory=list)


def verify_notice(token: str, exchange: Exchange) -> dict[str, Any]:
    """Check a notice's broker signature (what a sender's system does); return its payload."""
    _, payload = jose.verify(token, lambda kid: exchange.registry.get(kid, use="sig", agency="broker"),
                             TYP_NOTICE)
    return payload


@dataclass
class SafeguardingTimers:
    exchange: Exchange
    delivery_expiry: timedelta

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away: the next sweep catches up
                log.warning("safeguarding_sweep_failed", error=type(exc).__name__)
            await asyncio.sleep(interval_s)

    async def sweep(self) -> Sweep:
        done = Sweep()
        now = self.exchange.clock()
        async with self.exchange.audit.transaction() as batch:
            for timer, delivery in await store.due_escalations(batch.session, now):
                self._escalate(batch, timer, delivery, now)
                done.escalated.append(delivery.delivery_id)
            for delivery in await store.overdue_deliveries(batch.session, now - self.delivery_expiry):
                await self._expire(batch, delivery, now)
                done.expired.append(delivery.delivery_id)
        for delivery_id in done.escalated:
            # the ops alert: a structured line an alerting rule matches, ids only
            log.warning("safeguarding_escalation", delivery_id=delivery_id)
        if done.expired:
            log.info("deliveries_expired", count=len(done.expired))
        return done

    def _escalate(self, batch: Batch, timer: DeliveryTimerRow, delivery: DeliveryRow,
                  now: datetime) -> None:
        timer.escalated_at = now
        under = f" (clause {timer.clause})" if timer.clause else ""
        reason = f"not acknowledged within {timer.hours:g}h{under}; state {delivery.state}"
        entry = batch.add(lambda seq: self._entry(seq, EntryKind.ESCALATED, delivery, now, reason,
                                                  "safeguarding.escalation"))
        self._notice(batch, "escalation", delivery, now, entry.seq, reason,
                     escalate_at=wire.epoch(store.utc(timer.escalate_at)))

    async def _expire(self, batch: Batch, delivery: DeliveryRow, now: datetime) -> None:
        previous = delivery.state
        delivery.state, delivery.jwe = "expired", None
        hours = self.delivery_expiry.total_seconds() / 3600
        reason = f"not acknowledged within {hours:g}h; was {previous}"
        entry = batch.add(lambda seq: self._entry(seq, EntryKind.EXPIRED, delivery, now, reason,
                                                  "delivery.expiry"))
        self._notice(batch, "non_delivery", delivery, now, entry.seq, reason)
        # P9: a dead-lettered copy of an expired delivery is never replayed; drop its ciphertext
        for dead in await dead_letter_store.pending_for_delivery(batch.session, delivery.delivery_id):
            dead.state, dead.body, dead.acted_at, dead.acted_by = "purged", None, now, "system"
            why = f"dead letter {dead.dead_letter_id} purged: delivery expired"
            batch.add(partial(self._entry, kind=EntryKind.DEAD_LETTER_PURGED, delivery=delivery, now=now,
                              reason=why, rule="delivery.expiry"))

    def _entry(self, seq: int, kind: EntryKind, delivery: DeliveryRow, now: datetime, reason: str,
               rule: str) -> AuditEntry:
        return AuditEntry(seq=seq, kind=kind, at=now, actor=SYSTEM, message_id=delivery.message_id,
                          delivery_id=delivery.delivery_id, masp_type=delivery.masp_type,
                          sender=delivery.sender, recipient=delivery.recipient, decision=kind.value,
                          rules=(rule,), reason=reason, policy_hash=self.exchange.bundle.policy_hash)

    def _notice(self, batch: Batch, kind: str, delivery: DeliveryRow, now: datetime, audit_seq: int,
                reason: str, **extra: Any) -> None:
        notice_id = wire.new_id()
        token = jose.sign({
            "iss": "broker", "aud": delivery.sender, "jti": notice_id, "kind": kind,
            "delivery_id": delivery.delivery_id, "message_id": delivery.message_id,
            "recipient": delivery.recipient, "masp_type": delivery.masp_type,
            "state": delivery.state, "reason": reason, "audit_seq": audit_seq,
            "iat": wire.epoch(now), **extra}, self.exchange.broker.sig, TYP_NOTICE,
            self.exchange.options.alg_for(delivery.sender))
        batch.session.add(NoticeRow(notice_id=notice_id, agency=delivery.sender, kind=kind,
                                    delivery_id=delivery.delivery_id, message_id=delivery.message_id,
                                    token=token, created_at=now))
