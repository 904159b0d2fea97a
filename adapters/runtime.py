"""The shared adapter runtime: sign, encrypt, submit, consume, verify, de-duplicate, acknowledge.

Each agency adapter is this runtime plus a translation between the agency's own records and
canonical messages. Delivery to the agency's application is effectively-once: a delivery is
handed over by writing ``received/<delivery_id>.json`` atomically, and a redelivered id that
is already there is acknowledged again without being handed over twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.trace import SpanKind

from adapters.files import atomic_write
from adapters.witness import LogWitness, Witnessed
from broker import telemetry, wire
from broker.audit.note import CosignatureSigner, NoteVerifier
from broker.audit.tlog_witness import FileWitnessState, Witness
from broker.audit.witness import witness_name
from broker.clock import Clock, system_clock
from broker.crypto.keys import BROKER, AgencyKeys, KeyRegistry
from broker.crypto.log_keys import trusted_log_keys
from broker.crypto.sdjwt import SdJwt
from broker.errors import ConfigurationError, MaspError
from broker.transport.connect import connection_user
from broker.transport.drain import Drain
from broker.transport.topology import Names
from broker.transport.traced import traced

log = structlog.get_logger("masp.adapter")

DeliveryHandler = Callable[[wire.Delivery], Awaitable[None]]


@dataclass
class AdapterRuntime:
    keys: AgencyKeys
    registry: KeyRegistry
    home: Path  # the adapter's own state: received deliveries, raw ciphertexts
    names: Names = field(default_factory=Names)
    clock: Clock = system_clock
    on_delivery: DeliveryHandler | None = None
    _channel: AbstractChannel | None = None
    _drain: Drain = field(default_factory=Drain)
    _handing: dict[str, tuple[asyncio.Lock, int]] = field(default_factory=dict)

    @property
    def agency(self) -> str:
        return self.keys.agency

    # --- sending -------------------------------------------------------------------------

    def compose(self, masp_type: str, body: dict[str, Any], *, case_id: str, purpose: str,
                subjects: list[dict[str, str]], ttl: timedelta = timedelta(hours=1),
                consent_ref: str | None = None, override: dict[str, Any] | None = None,
                jti: str | None = None) -> tuple[SdJwt, str]:
        """Sign a canonical message as this agency and seal it to the broker: (SD-JWT, JWE)."""
        message = wire.compose_message(
            self.keys, masp_type, body, case_id=case_id, purpose=purpose, subjects=subjects,
            now=self.clock(), ttl=ttl, consent_ref=consent_ref, override=override, jti=jti)
        return message, wire.seal_submission(message, self.registry.current(BROKER, "enc"))

    async def submit_amqp(self, connection: AbstractRobustConnection, jwe: str,
                          *, timeout: float = 30.0) -> dict[str, Any]:
        """Publish to ``masp.ingress`` with confirms and wait for the broker's reply.

        Routing key: this agency; ``user_id``: the RabbitMQ user of ``connection``, which
        RabbitMQ checks and the broker reads as the sending agency (docs/adapters.md).
        """
        async with connection.channel(publisher_confirms=True, on_return_raises=True) as ch:
            reply_q = await ch.declare_queue(exclusive=True, auto_delete=True)
            ingress = await ch.get_exchange(self.names.ingress, ensure=False)
            with telemetry.step("masp.adapter.submit", SpanKind.PRODUCER, agency=self.agency, via="amqp"):
                await ingress.publish(ingress_message(
                    jwe, connection, reply_to=reply_q.name, correlation_id=wire.new_id(),
                    headers=telemetry.inject()), routing_key=self.agency, mandatory=True)
            async with reply_q.iterator(timeout=timeout) as it:
                async for msg in it:
                    await msg.ack()
                    reply: dict[str, Any] = json.loads(msg.body)
                    return reply
        raise TimeoutError("no reply from the broker")  # pragma: no cover - iterator raises first

    async def submit_http(self, client: httpx.AsyncClient, jwe: str) -> httpx.Response:
        """``POST /v1/messages`` authenticated with a single-use assertion signed by this agency."""
        with telemetry.step("masp.adapter.submit", SpanKind.CLIENT, agency=self.agency, via="http"):
            response = await client.post("/v1/messages", content=jwe.encode("ascii"), headers={
                "content-type": "application/jose", **telemetry.inject(),
                "authorization": f"Bearer {wire.sign_agency_auth(self.keys, self.clock())}"})
            telemetry.annotate(status=response.status_code)
        return response

    # --- witnessing ----------------------------------------------------------------------

    def tlog_witness(self, origin: str | None = None) -> Witness:
        """This agency as a C2SP tlog witness of the broker's log (push and pull modes alike).

        It knows one log: ``origin``, or the one the key directory's audit log keys name, with
        those keys (a rotation's overlapping keys included). Its record of that log is
        ``<home>/witness/checkpoint``, the file the pull mode has always kept.
        """
        keys_dir = self.registry.directory
        if keys_dir is None:
            raise MaspError("the adapter has no key directory to read the audit log's keys from")
        private = self.keys.sig.private_key
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigurationError("the agency signing key is not an Ed25519 key")
        known = trusted_log_keys(keys_dir, self.clock(), origin)[0]

        def log_keys(presented: str) -> list[NoteVerifier]:
            if presented != known:
                return []
            return trusted_log_keys(keys_dir, self.clock(), known)[1]

        state = FileWitnessState(self.home / "witness" / "logs",
                                 {known: self.home / "witness" / "checkpoint"})
        return Witness(CosignatureSigner(witness_name(self.agency), private), log_keys, state,
                       self.clock)

    async def witness(self, client: httpx.AsyncClient, origin: str | None = None) -> Witnessed:
        """Check the broker's newest checkpoint against the last one seen here and cosign it.

        Raises ``LogRollback`` / ``LogInconsistent`` if the log shrank or forked.
        """
        return await LogWitness(self.keys, self.tlog_witness(origin), self.clock).run(client)

    # --- receiving -----------------------------------------------------------------------

    async def start(self, connection: AbstractRobustConnection, prefetch: int = 16) -> None:
        self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._channel.set_qos(prefetch_count=prefetch)
        # a (passive) declare registers the queue with the robust channel, so its consumer is
        # restored after a reconnect; ensure=False would leave the inbox unconsumed for good
        queue = await self._channel.get_queue(self.names.inbox(self.agency), ensure=True)
        await self._drain.consume(queue, traced("masp.adapter.receive", self._on_message,
                                                 delivery=True, agency=self.agency))

    async def stop(self) -> None:
        await self._drain.close(self._channel)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            with telemetry.step("masp.adapter.verify"):
                delivery = wire.open_delivery(message.body, self.keys, self.registry)
        except MaspError as exc:
            # Nothing in an unverifiable delivery can be trusted, not even its id: it goes to
            # the dead letters with its reason for ops to inspect; the application never sees it.
            log.warning("delivery_refused", agency=self.agency, code=exc.code)
            await message.reject(requeue=False)
            return
        telemetry.annotate(delivery_id=delivery.delivery_id, message_id=delivery.message_id,
                           sender=delivery.token.get("sender"), masp_type=delivery.token.get("masp_type"))
        try:
            # the application's own import runs before the hand-over is recorded, so a crash in
            # between redelivers and imports again (imports are keyed by delivery id) rather
            # than leaving a delivery recorded but never imported. The hand-over fsyncs: in a
            # thread, so other deliveries are verified meanwhile; one delivery id at a time
            # keeps "not yet handed over, import, record" atomic.
            key = delivery.delivery_id
            lock, users = self._handing.get(key, (asyncio.Lock(), 0))
            self._handing[key] = (lock, users + 1)
            try:
                async with lock:
                    fresh = not self._handed_over(delivery)
                    if fresh and self.on_delivery is not None:
                        await self.on_delivery(delivery)
                    fresh = await asyncio.to_thread(self._hand_over, delivery, message.body)
            finally:
                lock, users = self._handing[key]
                if users == 1:
                    del self._handing[key]
                else:
                    self._handing[key] = (lock, users - 1)
            telemetry.annotate(duplicate=not fresh)
            await self._send_ack(delivery)
        except Exception:
            log.exception("delivery_handling_failed", agency=self.agency,
                          delivery_id=delivery.delivery_id)
            await message.nack(requeue=True)
            return
        await message.ack()

    def _handed_over(self, delivery: wire.Delivery) -> bool:
        return (self.home / "received" / f"{delivery.delivery_id}.json").exists()

    def _hand_over(self, delivery: wire.Delivery, raw: bytes) -> bool:
        """Write the delivery for the application unless it already has it. True if new."""
        received = self.home / "received"
        target = received / f"{delivery.delivery_id}.json"
        if target.exists():
            log.info("delivery_duplicate", agency=self.agency, delivery_id=delivery.delivery_id)
            return False
        for sub in ("received", "deliveries"):
            (self.home / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.home / "deliveries" / f"{delivery.delivery_id}.jwe").write_bytes(raw)
        atomic_write(target, json.dumps(received_view(delivery), indent=2, sort_keys=True).encode())
        return True

    async def _send_ack(self, delivery: wire.Delivery) -> None:
        assert self._channel is not None
        token = wire.sign_ack(self.keys, delivery, self.clock())
        acks = await self._channel.get_exchange(self.names.acks, ensure=False)
        with telemetry.step("masp.adapter.ack", SpanKind.PRODUCER, delivery_id=delivery.delivery_id):
            await acks.publish(aio_pika.Message(
                token.encode("ascii"), content_type="application/jose",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers=telemetry.inject()),
                routing_key="", mandatory=True)

    def received(self) -> list[dict[str, Any]]:
        """What the application has been handed, oldest first (by delivery id, a UUIDv7)."""
        folder = self.home / "received"
        if not folder.exists():
            return []
        return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def ingress_message(jwe: str | bytes, connection: AbstractConnection, **properties: Any) -> aio_pika.Message:
    """A submission as published to ``masp.ingress``: persistent, JOSE, ``user_id`` = our RabbitMQ user."""
    return aio_pika.Message(jwe.encode("ascii") if isinstance(jwe, str) else jwe,
                            content_type="application/jose", delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            user_id=connection_user(connection), **properties)


def received_view(delivery: wire.Delivery) -> dict[str, Any]:
    """What the application is handed: the broker's token, the envelope, the fields.

    Each subject the broker lets this agency know of appears once: with the sender's own
    reference where that was disclosed to us (``pseudonymous`` false), otherwise with the
    pseudonym the broker keys for this agency alone.
    """
    disclosed = {d.digest: d.value for d in delivery.message.subjects}
    subjects = []
    for s in delivery.token.get("subjects") or []:
        own = disclosed.get(s.get("disclosure"))
        subjects.append({"category": s["category"], "ref": own["ref"] if own else s["ref"],
                         "pseudonymous": own is None})
    message = {k: v for k, v in delivery.message.payload.items()
               if k not in ("_sd", "_sd_alg", "subjects")}
    message.update({n: d.value for n, d in delivery.message.envelope.items()})
    message["subjects"] = subjects
    return {"delivery": delivery.token, "message": message, "fields": delivery.message.claims}


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.05) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    with suppress(Exception):
        return predicate()
    return False
