"""Dead letters: kept with RabbitMQ's reason, out of the way of good traffic, replayable by ops.

Every queue dead-letters to ``masp.dlx`` → ``masp.dead-letters`` (at-least-once): a message a
consumer rejects (unverifiable, poison) goes there at once with ``x-death`` reason
``rejected``; one that keeps failing goes there after ``x-delivery-limit`` attempts with
reason ``delivery_limit``. The keeper moves each dead letter into the database (metadata, plus
the body until it is replayed or purged), marks the delivery it belongs to ``dead_lettered``
and audits it, then acknowledges it: a dead letter is never dropped and never inspected by
requeueing (which would spend the dead-letter queue's own delivery limit).

Replay republishes the kept body to the queue it died in; purge drops the body. Both are
audited with the operator who did it. Listings show metadata only, never a body.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from broker import wire
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.crypto.keys import AGENCIES
from broker.errors import Conflict, NotFound
from broker.exchange import Exchange
from broker.store import dead_letters as store
from broker.store.delivery_models import DeadLetterRow
from broker.store.models import DeliveryRow
from broker.transport.connect import connection_user
from broker.transport.drain import Drain
from broker.transport.retry import with_backoff
from broker.transport.topology import Names

log = structlog.get_logger("masp.dead_letters")
SYSTEM = Actor(auth="system")
_CODE = re.compile(r"[^A-Za-z0-9._:-]")
REPLAY_HEADER = "masp-replay-of"


def _code(value: object, limit: int = 64) -> str | None:
    """Header values come from other systems: keep a bounded code, never free text."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    return _CODE.sub("", value[:limit]) or None


@dataclass(frozen=True)
class Death:
    """The newest ``x-death`` record: where the message died, why, and how often."""

    queue: str
    reason: str
    count: int
    at: datetime | None

    @classmethod
    def from_headers(cls, headers: Mapping[str, Any]) -> Death:
        deaths = headers.get("x-death")
        first: Mapping[str, Any] = deaths[0] if isinstance(deaths, list) and deaths \
            and isinstance(deaths[0], Mapping) else {}
        queue = _code(first.get("queue") or headers.get("x-first-death-queue"), 200) or "unknown"
        reason = _code(first.get("reason") or headers.get("x-first-death-reason")) or "unknown"
        count = first.get("count")
        at = first.get("time")
        return cls(queue, reason, count if isinstance(count, int) else 1,
                   at if isinstance(at, datetime) else None)


@dataclass(frozen=True)
class DeadMessage:
    body: bytes
    headers: Mapping[str, Any]
    message_id: str | None = None
    content_type: str | None = None

    @classmethod
    def from_amqp(cls, message: AbstractIncomingMessage) -> DeadMessage:
        return cls(message.body, dict(message.headers or {}), message.message_id, message.content_type)

    def fingerprint(self, death: Death) -> str:
        """Same bytes, id and death record: the same dead letter handed to the keeper again.

        (AMQP gives nothing finer: byte-identical messages with the same id dying in the same
        queue in the same second are kept as one.)
        """
        h = hashlib.sha256(self.body)
        h.update(f"|{_code(self.message_id)}|{death.queue}|{death.reason}|{death.count}|{death.at}|"
                 f"{_code(self.headers.get(REPLAY_HEADER))}".encode())
        return h.hexdigest()


async def record(exchange: Exchange, dead: DeadMessage) -> DeadLetterRow | None:
    """Keep one dead letter and audit it; None if it was kept before (a redelivered copy)."""
    death = Death.from_headers(dead.headers)
    fingerprint = dead.fingerprint(death)
    now = exchange.clock()
    amqp_id = _code(dead.message_id)
    async with exchange.audit.transaction() as batch:
        session = batch.session
        if await store.seen(session, fingerprint):
            return None
        delivery = await session.get(DeliveryRow, amqp_id) if amqp_id else None
        if delivery is not None and not death.queue.endswith(f"inbox.{delivery.recipient}"):
            delivery = None  # an id that happens to match, from elsewhere: do not link
        row = DeadLetterRow(
            dead_letter_id=wire.new_id(), fingerprint=fingerprint, queue=death.queue,
            reason=death.reason, death_count=death.count, died_at=death.at, recorded_at=now,
            state="pending", amqp_message_id=amqp_id, content_type=_code(dead.content_type),
            size=len(dead.body), body_digest="sha-256:" + hashlib.sha256(dead.body).hexdigest(),
            body=dead.body)
        if delivery is not None:
            row.delivery_id, row.message_id = delivery.delivery_id, delivery.message_id
            row.sender, row.recipient, row.masp_type = delivery.sender, delivery.recipient, delivery.masp_type
            if delivery.state in ("queued", "published"):
                delivery.state = "dead_lettered"
        session.add(row)
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.DEAD_LETTERED, at=now, actor=SYSTEM, message_id=row.message_id,
            delivery_id=row.delivery_id, masp_type=row.masp_type, sender=row.sender,
            recipient=row.recipient, decision=death.reason,
            reason=f"{death.reason} in {death.queue} (x-death count {death.count}); "
                   f"dead letter {row.dead_letter_id}",
            payload_digest=row.body_digest, policy_hash=exchange.bundle.policy_hash))
    log.warning("dead_lettered", dead_letter_id=row.dead_letter_id, queue=death.queue,
                reason=death.reason, delivery_id=row.delivery_id)
    return row


def replay_targets(names: Names) -> frozenset[str]:
    return frozenset({*(names.ingress_queue(a) for a in AGENCIES), names.acks,
                      *(names.inbox(a) for a in AGENCIES)})


async def replay(exchange: Exchange, connection: AbstractConnection, names: Names,
                 dead_letter_id: str, actor: Actor) -> DeadLetterRow:
    """Republish a kept dead letter to the queue it died in, with confirms, and audit it."""
    async with exchange.sessions() as session:
        row = await store.get(session, dead_letter_id)
        delivery = await session.get(DeliveryRow, row.delivery_id) if row and row.delivery_id else None
    if row is None:
        raise NotFound("no such dead letter")
    if row.state != "pending" or row.body is None:
        raise Conflict(f"dead letter is {row.state}; only pending ones can be replayed")
    if row.queue not in replay_targets(names):
        raise Conflict("dead letter came from a queue outside this deployment's namespace")
    if delivery is not None and delivery.state == "expired":
        raise Conflict("the delivery has expired and its sender was told; it is not sent again")
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        # user_id: the broker's own RabbitMQ user, which the ingress consumer accepts for the
        # agency whose queue the submission died in (transport/identity.py)
        await channel.default_exchange.publish(aio_pika.Message(
            row.body, content_type=row.content_type, message_id=row.amqp_message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT, user_id=connection_user(connection),
            headers={REPLAY_HEADER: row.dead_letter_id}), routing_key=row.queue, mandatory=True)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        kept = await batch.session.get(DeadLetterRow, dead_letter_id)
        if kept is None or kept.state != "pending":  # replayed concurrently: one entry is enough
            return kept or row
        kept.state, kept.body, kept.acted_at, kept.acted_by = "replayed", None, now, _who(actor)
        delivery = await batch.session.get(DeliveryRow, kept.delivery_id) if kept.delivery_id else None
        if delivery is not None and delivery.state == "dead_lettered":
            delivery.state, delivery.published_at = "published", now
        batch.add(lambda seq: _ops_entry(seq, EntryKind.REPLAYED, kept, actor, now,
                                         f"dead letter {kept.dead_letter_id} replayed to {kept.queue}",
                                         exchange.bundle.policy_hash))
    log.info("dead_letter_replayed", dead_letter_id=dead_letter_id, queue=row.queue, by=_who(actor))
    return kept


async def purge(exchange: Exchange, dead_letter_id: str, actor: Actor) -> DeadLetterRow:
    """Drop a dead letter's body for good (it stays listed, as purged) and audit it."""
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        row = await batch.session.get(DeadLetterRow, dead_letter_id)
        if row is None:
            raise NotFound("no such dead letter")
        if row.state != "pending":
            raise Conflict(f"dead letter is {row.state}; only pending ones can be purged")
        row.state, row.body, row.acted_at, row.acted_by = "purged", None, now, _who(actor)
        batch.add(lambda seq: _ops_entry(seq, EntryKind.DEAD_LETTER_PURGED, row, actor, now,
                                         f"dead letter {row.dead_letter_id} purged",
                                         exchange.bundle.policy_hash))
    log.info("dead_letter_purged", dead_letter_id=dead_letter_id, by=_who(actor))
    return row


def _who(actor: Actor) -> str:
    return actor.user_id or actor.agency or actor.auth


def _ops_entry(seq: int, kind: EntryKind, row: DeadLetterRow, actor: Actor, now: datetime,
               reason: str, policy_hash: str) -> AuditEntry:
    return AuditEntry(seq=seq, kind=kind, at=now, actor=actor, message_id=row.message_id,
                      delivery_id=row.delivery_id, masp_type=row.masp_type, sender=row.sender,
                      recipient=row.recipient, reason=reason, payload_digest=row.body_digest,
                      policy_hash=policy_hash)


class DeadLetterKeeper:
    """Consumes ``masp.dead-letters`` into the database, one transaction per dead letter."""

    def __init__(self, exchange: Exchange, channel: AbstractChannel, names: Names, drain: Drain) -> None:
        self.exchange = exchange
        self.channel = channel
        self.names = names
        self.drain = drain

    async def start(self) -> None:
        # passive declare, not ensure=False: only a declared queue's consumer survives a reconnect
        queue = await self.channel.get_queue(self.names.dead_letters, ensure=True)
        await self.drain.consume(queue, self._on_dead_letter)

    async def _on_dead_letter(self, message: AbstractIncomingMessage) -> None:
        dead = DeadMessage.from_amqp(message)
        # The dead-letter queue has nowhere further to send a message: keep trying until the
        # database takes it (or this process stops and RabbitMQ hands it to another).
        await with_backoff(lambda: record(self.exchange, dead), what="dead_letter", budget_s=None,
                           cap_s=30.0)
        await message.ack()
