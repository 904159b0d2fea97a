"""Case events: metadata-only news on the topic exchange ``masp.events``, for partners to bind.

Events are read from the audit log, not raised beside it: every state change the broker makes
is already an audit entry committed with the change itself, so the log is the outbox and an
event can neither be lost nor announce something that rolled back. A cursor in the database
records how far the feed got; after a crash the last batch may be sent again, so subscribers
de-duplicate by ``seq`` (with ``event``).

Routing key ``<agency>.<event>`` (``delivery.waiting``, ``delivery.acknowledged``, ...): an
agency's RabbitMQ user may bind only ``<agency>.#`` (deploy/rabbitmq/definitions.json), so it
hears about its own messages only; ``ops.#`` is for the operators. An event holds ids, types,
states, agency names and rule ids, never personal data: the audit entries it comes from hold
none, and only the fields listed in ``EVENT_FIELDS`` are copied.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel

from broker.audit.entry import AuditEntry, EntryKind
from broker.crypto.keys import AGENCIES
from broker.exchange import Exchange
from broker.store import event_cursor
from broker.store.audit_log import read_entries
from broker.transport.topology import Names

log = structlog.get_logger("masp.events")
OPS = "ops"
#: The only entry fields an event ever carries.
EVENT_FIELDS = ("message_id", "delivery_id", "masp_type", "case_id", "sender", "recipient")

#: audit entry kind → (audience, event name, delivery state); audience is an entry field or "ops".
_EVENTS: dict[EntryKind, tuple[tuple[str, str, str | None], ...]] = {
    EntryKind.SUBMITTED: (("sender", "message.accepted", None),),
    EntryKind.DISCLOSED: (("recipient", "delivery.waiting", "queued"),
                          ("sender", "delivery.queued", "queued")),
    EntryKind.REFUSED: (("sender", "message.refused", None),),
    EntryKind.ACKNOWLEDGED: (("sender", "delivery.acknowledged", "acknowledged"),),
    EntryKind.REJECTED_BY_RECIPIENT: (("sender", "delivery.rejected", "rejected"),),
    EntryKind.EXPIRED: (("sender", "delivery.expired", "expired"),),
    EntryKind.ESCALATED: (("sender", "delivery.escalated", None), (OPS, "delivery.escalated", None)),
    EntryKind.DEAD_LETTERED: (("sender", "delivery.dead_lettered", "dead_lettered"),
                              (OPS, "dead_letter.recorded", "dead_lettered")),
    EntryKind.REPLAYED: (("sender", "delivery.replayed", "published"),
                         (OPS, "dead_letter.replayed", None)),
}


def events_for(entry: AuditEntry) -> Iterator[tuple[str, dict[str, Any]]]:
    """(routing key, event body) for each event one audit entry raises."""
    for audience, name, state in _EVENTS.get(entry.kind, ()):
        agency = OPS if audience == OPS else getattr(entry, audience)
        if agency not in (*AGENCIES, OPS):
            continue  # e.g. an ingress refusal with no verified sender: nobody to tell
        body: dict[str, Any] = {"event": name, "seq": entry.seq, "at": entry.at.isoformat(),
                                "agency": agency, "kind": entry.kind.value}
        body |= {f: getattr(entry, f) for f in EVENT_FIELDS if getattr(entry, f) is not None}
        if state is not None:
            body["state"] = state
        if entry.kind is EntryKind.REFUSED:
            body["rules"] = list(entry.rules)
        yield f"{agency}.{name}", body


class CaseEvents:
    """Tails the audit log and publishes its events with publisher confirms."""

    def __init__(self, exchange: Exchange, channel: AbstractChannel, names: Names,
                 *, poll_s: float = 0.5) -> None:
        self.exchange = exchange
        self.channel = channel  # opened with publisher confirms
        self.names = names
        self.poll_s = poll_s
        self._cursor: int | None = None

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                sent = await self.publish_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("case_events_failed", error=type(exc).__name__, retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)
                continue
            if sent == 0:
                await asyncio.sleep(self.poll_s)

    async def publish_once(self, limit: int = 200) -> int:
        """Publish the events of up to ``limit`` new audit entries; the number of entries read."""
        sessions = self.exchange.sessions
        if self._cursor is None:
            self._cursor = await event_cursor.start(sessions)
        async with sessions() as session:
            rows = await read_entries(session, after=self._cursor, limit=limit)
        if not rows:
            return 0
        target = await self.channel.get_exchange(self.names.events, ensure=False)
        # confirms awaited together (one round trip per batch, not per event); any failure
        # raises before the cursor moves, so the whole batch is sent again. Not mandatory:
        # an event nobody has bound a queue for is normal (a feed, not a delivery), and
        # aio-pika's default mandatory publish had RabbitMQ send every such event back whole.
        await asyncio.gather(*(
            target.publish(aio_pika.Message(
                json.dumps(body, separators=(",", ":")).encode(), content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=f"{body['seq']}.{key}",
                type=body["event"]), routing_key=key, mandatory=False)
            for row in rows for key, body in events_for(AuditEntry.from_leaf(row.leaf))))
        last = rows[-1].seq
        if not await event_cursor.advance(sessions, self._cursor, last):
            async with sessions() as session:  # another process moved on: follow it
                last = await event_cursor.position(session) or last
        self._cursor = last
        return len(rows)

    async def stop(self) -> None:
        with suppress(Exception):
            await self.channel.close()
