"""AMQP edge of the broker: ingress (per agency) and acknowledgement consumers, and the outbox relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from functools import partial

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker import telemetry
from broker.acks import acknowledge_many
from broker.crypto.keys import AGENCIES
from broker.errors import MaspError, MisroutedSubmission, Unauthorized
from broker.exchange import Exchange
from broker.rate_limit import AgencyRateLimit
from broker.store.deliveries import QueuedDelivery, claim_queued, lock_queued
from broker.store.deliveries import still_queued as queued_among
from broker.store.models import DeliveryRow
from broker.transport.batching import Batcher
from broker.transport.drain import Drain
from broker.transport.identity import AmqpIdentities
from broker.transport.retry import with_backoff
from broker.transport.topology import Names, Topology, declare, declare_ingress_queue
from broker.transport.traced import traced

log = structlog.get_logger("masp.transport")


class BrokerWorkers:
    """Consumers and relay of one broker process; several processes may run side by side.

    Ingress is one queue per agency, each consumed on its own channel with its own prefetch,
    so one agency's backlog holds at most its own window of messages here, never the others'.
    Who sent a message is the agency RabbitMQ authenticated (``user_id``, ``transport/identity.py``);
    the agency's rate limit is checked before anything is decrypted; then the message joins
    the group commit in its agency's lane, which may take only its share of a batch.
    """

    def __init__(self, exchange: Exchange, connection: AbstractRobustConnection, names: Names,
                 *, delivery_limit: int = 5, prefetch: int = 32,
                 identities: AmqpIdentities | None = None,
                 rate_limit: AgencyRateLimit | None = None, refusal_rate: float = 200.0) -> None:
        self.exchange = exchange
        self.connection = connection
        self.names = names
        self.delivery_limit = delivery_limit
        self.prefetch = prefetch  # per agency's ingress queue, and for the acknowledgements
        self.identities = identities or AmqpIdentities({a: a for a in AGENCIES})
        self.rate_limit = rate_limit
        #: refusals before reading, per ingress queue and second (0: unpaced), and each queue's
        #: next free slot on the loop's clock
        self.refusal_rate = refusal_rate
        self._refusal_slots: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._channel: AbstractChannel | None = None
        self._ingress_channels: list[AbstractChannel] = []
        self._publish_channel: AbstractChannel | None = None
        self._reply_channel: AbstractChannel | None = None  # no confirms: refusals' replies
        self.topology: Topology | None = None
        self._drain = Drain()
        # group commit: messages that wait on the audit sequencer together commit together
        self._ingress = Batcher(partial(exchange.submit_many, via="amqp"), max_size=prefetch)
        self._acks = Batcher(partial(acknowledge_many, exchange, via="amqp"), max_size=prefetch)

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self.topology = await declare(self._channel, self.names, delivery_limit=self.delivery_limit)
        self._publish_channel = await self.connection.channel(
            publisher_confirms=True, on_return_raises=True)
        self._reply_channel = await self.connection.channel(publisher_confirms=False)
        for agency in self.topology.ingress_queues:
            # a channel of its own per agency: prefetch is per channel, and a robust channel
            # re-consumes the queue it declared after a reconnect
            channel = await self.connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            self._ingress_channels.append(channel)
            queue = await declare_ingress_queue(channel, self.names, agency,
                                                delivery_limit=self.delivery_limit)
            await self._drain.consume(queue, traced("masp.ingress", partial(self._on_ingress, agency),
                                                    queue=f"masp.ingress.{agency}"))
        await self._drain.consume(self.topology.acks_queue, traced("masp.ack", self._on_ack))
        self._tasks.append(asyncio.create_task(self._relay_loop(), name="outbox-relay"))

    async def stop(self) -> None:
        """Stop consuming, let messages in hand finish, stop the relay, close the channels."""
        await self._drain.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self._drain.close(*self._ingress_channels, self._channel, self._publish_channel,
                                self._reply_channel)
        self._ingress_channels.clear()

    @property
    def consumers(self) -> tuple[tuple[AbstractQueue, str], ...]:
        """(queue, consumer tag) of every consumer started here, for the watchdog."""
        return self._drain.consumers

    @property
    def relay_alive(self) -> bool:
        return bool(self._tasks) and all(not t.done() for t in self._tasks)

    async def _on_ingress(self, queue_agency: str, message: AbstractIncomingMessage) -> None:
        self.exchange.metrics.rates.record(f"out:masp.ingress.{queue_agency}")
        try:
            agency = self._sender(queue_agency, message)
        except MaspError as exc:
            await self._refuse_unread(exc, message, queue_agency)
            return
        try:
            # the database away for a while: retry with backoff before giving the message back
            trace = telemetry.inject()
            receipt = await with_backoff(
                lambda: self._ingress.submit((message.body, trace, agency), lane=agency),
                what="ingress")
            reply: dict[str, object] = receipt.as_json()
            # the batch ran in the group-commit task: name the message on this message's span
            telemetry.annotate(message_id=receipt.message_id, audit_seq=receipt.audit_seq,
                               outcome="duplicate" if receipt.duplicate else "accepted")
        except MaspError as exc:  # refused and audited: the message is dealt with, never requeued
            telemetry.annotate(outcome="refused", code=exc.code)
            reply = exc.problem()
        except Exception:
            # infrastructure failure (e.g. database down): let RabbitMQ redeliver; after
            # x-delivery-limit attempts the message is dead-lettered, never dropped
            log.exception("ingress_failed", redelivered=message.redelivered, agency=agency)
            await message.nack(requeue=True)
            return
        if message.reply_to:
            await self._reply(message, reply)
        await message.ack()

    def _sender(self, queue_agency: str, message: AbstractIncomingMessage) -> str:
        """The authenticated agency, within its rate limit; else the (typed) refusal."""
        agency = self.identities.agency_of(message.user_id, queue_agency)
        telemetry.annotate(agency=agency)
        if self.rate_limit is not None:
            self.rate_limit.check(agency)
        return agency

    async def _refuse_unread(self, exc: MaspError, message: AbstractIncomingMessage,
                             queue_agency: str) -> None:
        """Refuse a message before anything in it is read: audited (repeats of a kind only
        counted, ``broker/refusals.py``), answered, acknowledged, never requeued.

        This is the path a flood takes, so it is kept cheap: no decryption, and the problem
        reply goes without a publisher confirm (it is advice to the sender; the audit entry
        or count is the record). And it is paced, per queue: however fast a partner
        publishes, its refusals take at most ``refusal_rate`` messages' worth of this
        process's time a second; the rest of its flood waits in its own queue, where it
        holds back nobody else. Only the audit write waiting for the database requeues.
        """
        await self._pace(queue_agency)
        telemetry.annotate(outcome="refused", code=exc.code)
        agency: str | None = queue_agency  # authenticated, and e.g. over its rate limit
        if isinstance(exc, MisroutedSubmission):
            agency = exc.agency
        elif isinstance(exc, Unauthorized):
            agency = None
        try:
            await with_backoff(partial(self.exchange.refuse_unread, exc, via="amqp", agency=agency,
                                       received=message.body), what="ingress")
        except Exception:
            log.exception("ingress_failed", redelivered=message.redelivered, agency=agency)
            await message.nack(requeue=True)
            return
        if message.reply_to and self._reply_channel is not None:
            # advice only: a vanished reply queue, or a reply channel being restored, loses nothing
            with suppress(aio_pika.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError):
                await self._reply_channel.default_exchange.publish(
                    _reply_message(message, exc.problem()), routing_key=message.reply_to)
        await message.ack()

    async def _pace(self, queue_agency: str) -> None:
        if self.refusal_rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._refusal_slots.get(queue_agency, 0.0))
        self._refusal_slots[queue_agency] = slot + 1.0 / self.refusal_rate
        if slot > now:  # the handlers holding this queue's prefetch window wait their turn
            await asyncio.sleep(slot - now)

    async def _reply(self, message: AbstractIncomingMessage, body: dict[str, object]) -> None:
        assert self._publish_channel is not None
        with suppress(aio_pika.exceptions.PublishError):  # a vanished reply queue loses nothing
            await self._publish_channel.default_exchange.publish(
                _reply_message(message, body), routing_key=message.reply_to or "")

    async def _on_ack(self, message: AbstractIncomingMessage) -> None:
        try:
            result = await with_backoff(
                lambda: self._acks.submit(message.body.decode("ascii", "replace")), what="ack")
            # the batch ran in the group-commit task: name the delivery on this message's span
            telemetry.annotate(delivery_id=result["delivery_id"], duplicate=result["duplicate"])
        except MaspError as exc:
            log.warning("ack_refused", code=exc.code)
            await message.reject(requeue=False)  # to dead letters, with the reason in x-death
            return
        except Exception:
            log.exception("ack_failed")
            await message.nack(requeue=True)
            return
        await message.ack()

    async def _relay_loop(self) -> None:
        backoff = 0.5
        outbox = self.exchange.outbox
        while True:
            outbox.ready.clear()
            try:
                sent = await self.relay_once()
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_relay_failed", retry_in_s=backoff)
                outbox.sweep_soon()  # what this round took stays queued in the table
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if sent == 0 and not outbox.ready.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(outbox.sweep_s):
                        await outbox.ready.wait()

    async def relay_once(self, limit: int = 200) -> int:
        """Publish deliveries with confirms and mark them published; how many were published.

        Deliveries this process has just committed are published as they are
        (``broker/outbox.py``); otherwise the table is swept (``claim_queued``). Several
        relays never take the same rows. A crash between the confirm and the mark
        republishes the delivery; recipients de-duplicate by delivery id, so their
        applications still see it once.
        """
        if self._publish_channel is None or self.topology is None:
            raise RuntimeError("workers are not started")
        outbox = self.exchange.outbox
        postgres = self.exchange.audit.postgres
        if outbox.sweep_due():
            published = await self._publish_and_mark(
                partial(claim_queued, limit=limit, postgres=postgres))
            outbox.published(published)
            if published:
                log.debug("outbox_published", count=len(published))
            return len(published)
        fresh = outbox.take(limit)
        if not fresh:
            return 0

        async def still_queued(session: AsyncSession) -> list[QueuedDelivery]:
            # PostgreSQL: lock by key, without the ciphertexts, so a row another process's
            # relay is publishing is left to it; SQLite runs one broker process: no lock, but
            # a delivery acknowledged over the mailbox meanwhile is not published after all
            ids = [d.delivery_id for d in fresh]
            held = await (lock_queued(session, ids) if postgres else queued_among(session, ids))
            return [d for d in fresh if d.delivery_id in held]

        published = await self._publish_and_mark(still_queued)
        if len(published) < len(fresh):
            outbox.sweep_soon()  # what did not go out stays queued in the table
        log.debug("outbox_published", count=len(published), fresh=True)
        return len(published)

    async def _publish_and_mark(
            self, pick: Callable[[AsyncSession], Awaitable[list[QueuedDelivery]]]) -> list[str]:
        """Choose deliveries in a transaction, publish them, mark them published; the ids.

        On PostgreSQL the chosen rows are locked and stay locked until the mark commits.
        SQLite: a read transaction must not later write (a stale WAL snapshot cannot be
        upgraded), so the rows are published outside it and marked in a fresh one.
        """
        async with self.exchange.sessions() as session:
            async with session.begin():
                rows = await pick(session)
                if not rows:
                    return []
                if self.exchange.audit.postgres:
                    published = await self._publish(rows)
                    await self._mark(session, published)
                    return published
            published = await self._publish(rows)
            async with session.begin():
                await self._mark(session, published)
        return published

    async def _mark(self, session: AsyncSession, published: list[str]) -> None:
        # conditional: an acknowledgement may already have overtaken the mark
        await session.execute(
            update(DeliveryRow)
            .where(col(DeliveryRow.delivery_id).in_(published), col(DeliveryRow.state) == "queued")
            .values(state="published", published_at=self.exchange.clock()))

    async def _publish(self, rows: Sequence[QueuedDelivery]) -> list[str]:
        """Publish every row with its confirm in flight at once; the ids RabbitMQ confirmed.

        Confirms are awaited together, not one by one: a round trip per delivery would
        bound the relay at one delivery per RabbitMQ fsync. If only some fail, the rest are
        marked and the failed ones stay queued for the next round.
        """
        assert self._publish_channel is not None
        exchange = await self._publish_channel.get_exchange(self.names.deliver, ensure=False)
        mailbox_only = self.exchange.options.mailbox_agencies()

        async def publish(row: QueuedDelivery) -> str:
            if row.recipient in mailbox_only:
                # the agency reads its deliveries over HTTP only (MASP_DELIVERY_MODES): published
                # to its mailbox is all there is to do; a copy in its queue would wait for ever
                self.exchange.metrics.record_delivered(row.recipient, row.masp_type)
                return row.delivery_id
            with telemetry.publishing(row.trace or None, "masp.publish",
                                      delivery_id=row.delivery_id, message_id=row.message_id,
                                      recipient=row.recipient, masp_type=row.masp_type) as trace_headers:
                await exchange.publish(aio_pika.Message(
                    row.jwe.encode("ascii"), content_type="application/jose",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=row.delivery_id,
                    headers={"masp-sender": row.sender, "masp-type": row.masp_type, **trace_headers},
                ), routing_key=row.recipient, mandatory=True)
            self.exchange.metrics.record_delivered(row.recipient, row.masp_type)
            return row.delivery_id

        outcomes = await asyncio.gather(*(publish(r) for r in rows), return_exceptions=True)
        published = [o for o in outcomes if isinstance(o, str)]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed and not published:
            raise failed[0]
        if failed:
            log.warning("outbox_publish_partly_failed", failed=len(failed), error=type(failed[0]).__name__)
        return published


def _reply_message(message: AbstractIncomingMessage, body: dict[str, object]) -> aio_pika.Message:
    return aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                            correlation_id=message.correlation_id)
