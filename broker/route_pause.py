"""Pausing one route: ops stop the outbox relay publishing to one recipient, then resume it.

While a route is paused, new deliveries to that recipient stay ``queued`` in the outbox (their
safeguarding and expiry timers keep running); what was already published stays in the
recipient's inbox. Resuming lets the relay publish the backlog in order. Both are audited.
"""

from __future__ import annotations

from typing import Any

import structlog

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.crypto.keys import AGENCIES
from broker.errors import Conflict, NotFound
from broker.exchange import Exchange
from broker.store import deliveries as store

log = structlog.get_logger("masp.routes")


def _check(recipient: str) -> None:
    if recipient not in AGENCIES:
        raise NotFound(f"no route to {recipient!r}; one of {', '.join(AGENCIES)}")


async def pause(exchange: Exchange, recipient: str, actor: Actor, reason: str | None = None) -> None:
    _check(recipient)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        if not await store.pause_route(batch.session, recipient, by=actor.user_id or actor.auth,
                                       reason=reason, at=now):
            raise Conflict(f"route to {recipient} is already paused")
        batch.add(lambda seq: AuditEntry(seq=seq, kind=EntryKind.ROUTE_PAUSED, at=now, actor=actor,
                                         recipient=recipient, reason=reason,
                                         policy_hash=exchange.bundle.policy_hash))
    log.warning("route_paused", recipient=recipient, by=actor.user_id)


async def resume(exchange: Exchange, recipient: str, actor: Actor, reason: str | None = None) -> None:
    _check(recipient)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        if not await store.resume_route(batch.session, recipient):
            raise Conflict(f"route to {recipient} is not paused")
        batch.add(lambda seq: AuditEntry(seq=seq, kind=EntryKind.ROUTE_RESUMED, at=now, actor=actor,
                                         recipient=recipient, reason=reason,
                                         policy_hash=exchange.bundle.policy_hash))
    exchange.outbox.sweep_soon()  # the relay publishes the backlog now, not at its next poll
    log.info("route_resumed", recipient=recipient, by=actor.user_id)


async def paused(exchange: Exchange) -> list[dict[str, Any]]:
    async with exchange.sessions() as session:
        rows = await store.paused_routes(session)
    return [{"recipient": r.recipient, "paused_at": store.iso(r.paused_at), "paused_by": r.paused_by,
             "reason": r.reason} for r in rows]
