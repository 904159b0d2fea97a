"""RabbitMQ topology (docs/spec/events.md): declared idempotently by every process at start.

Every queue is a durable quorum queue with an explicit delivery limit and at-least-once
dead-lettering to ``masp.dlx``, so a poison message ends in ``masp.dead-letters`` with its
reason instead of blocking its queue or being dropped.

Ingress is one queue per agency, ``masp.ingress.<agency>``, fed from the topic exchange
``masp.ingress`` by routing key = the sending agency: no agency's submissions wait behind
another's backlog, and each queue has its own consumer and prefetch in the broker. A topic
exchange because RabbitMQ checks topic permissions (the routing keys a user may publish
with) on topic exchanges only: ``deploy/rabbitmq/definitions.json`` lets each agency's user
publish to ``masp.ingress`` with its own name as routing key and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

from broker.crypto.keys import AGENCIES
from broker.errors import ConfigurationError

_NAMESPACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def normalise_namespace(namespace: str) -> str:
    """``""`` stays empty; ``demo1`` and ``demo1.`` become ``demo1.``; anything else (``.``
    included: it would silently mean no namespace) is refused."""
    if not namespace:
        return ""
    bare = namespace.removesuffix(".")
    if not _NAMESPACE.fullmatch(bare):
        raise ConfigurationError("MASP_NAMESPACE: letters, digits, '-' and '_' (at most 63), "
                                 "optionally ending in '.'")
    return f"{bare}."


@dataclass(frozen=True)
class Names:
    """Exchange and queue names, optionally prefixed so deployments or tests share a vhost.

    A namespace ``demo1`` (or ``demo1.``) gives ``demo1.masp.ingress``, ``demo1.inbox.nhs``:
    the prefix always ends in a dot, so a partner can tell the namespace from the name and a
    RabbitMQ permission pattern can anchor on it (docs/spec/events.md).
    """

    namespace: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "namespace", normalise_namespace(self.namespace))

    def _n(self, name: str) -> str:
        return f"{self.namespace}{name}"

    @property
    def ingress(self) -> str:
        return self._n("masp.ingress")

    def ingress_queue(self, agency: str) -> str:
        return self._n(f"masp.ingress.{agency}")

    @property
    def deliver(self) -> str:
        return self._n("masp.deliver")

    @property
    def acks(self) -> str:
        return self._n("masp.acks")

    @property
    def dlx(self) -> str:
        return self._n("masp.dlx")

    @property
    def dead_letters(self) -> str:
        return self._n("masp.dead-letters")

    @property
    def events(self) -> str:
        return self._n("masp.events")

    def inbox(self, agency: str) -> str:
        return self._n(f"inbox.{agency}")


def quorum_args(dlx: str | None, delivery_limit: int) -> dict[str, Any]:
    args: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": delivery_limit}
    if dlx is not None:
        # at-least-once dead-lettering needs reject-publish overflow (RabbitMQ >= 3.10)
        args |= {"x-dead-letter-exchange": dlx, "x-dead-letter-strategy": "at-least-once",
                 "x-overflow": "reject-publish"}
    return args


@dataclass
class Topology:
    ingress: AbstractExchange
    deliver: AbstractExchange
    acks: AbstractExchange
    dlx: AbstractExchange
    ingress_queues: dict[str, AbstractQueue]
    acks_queue: AbstractQueue
    dead_letters: AbstractQueue
    inboxes: dict[str, AbstractQueue]
    events: AbstractExchange | None = None


async def declare(channel: AbstractChannel, names: Names, *, delivery_limit: int = 5,
                  agencies: tuple[str, ...] = AGENCIES) -> Topology:
    kind = aio_pika.ExchangeType
    direct, fanout, topic = kind.DIRECT, kind.FANOUT, kind.TOPIC
    try:
        ingress = await channel.declare_exchange(names.ingress, topic, durable=True)
    except aiormq.exceptions.ChannelPreconditionFailed:
        raise ConfigurationError(
            f"exchange {names.ingress} exists with another type: it is the fanout of the single "
            "ingress queue before per-agency ingress; drain and delete it and the queue "
            f"{names.ingress} (docs/operations.md, upgrading to per-agency ingress)") from None
    deliver = await channel.declare_exchange(names.deliver, direct, durable=True)
    acks = await channel.declare_exchange(names.acks, fanout, durable=True)
    dlx = await channel.declare_exchange(names.dlx, fanout, durable=True)
    events = await channel.declare_exchange(names.events, topic, durable=True)

    dead = await channel.declare_queue(
        names.dead_letters, durable=True, arguments=quorum_args(None, delivery_limit))
    await dead.bind(dlx)
    args = quorum_args(names.dlx, delivery_limit)
    ingress_qs = {a: await declare_ingress_queue(channel, names, a, delivery_limit=delivery_limit)
                  for a in agencies}
    acks_q = await channel.declare_queue(names.acks, durable=True, arguments=args)
    await acks_q.bind(acks)
    inboxes: dict[str, AbstractQueue] = {}
    for agency in agencies:
        q = await channel.declare_queue(names.inbox(agency), durable=True, arguments=args)
        await q.bind(deliver, routing_key=agency)
        inboxes[agency] = q
    return Topology(ingress, deliver, acks, dlx, ingress_qs, acks_q, dead, inboxes, events)


async def declare_ingress_queue(channel: AbstractChannel, names: Names, agency: str, *,
                                delivery_limit: int = 5) -> AbstractQueue:
    """``masp.ingress.<agency>``, bound to ``masp.ingress`` by exactly the agency's name (no
    wildcard reaches it). Declared, not just looked up, on the channel that consumes it: a
    robust channel then re-creates and re-binds the queue should it be deleted."""
    queue = await channel.declare_queue(names.ingress_queue(agency), durable=True,
                                        arguments=quorum_args(names.dlx, delivery_limit))
    await queue.bind(names.ingress, routing_key=agency)
    return queue


async def delete(channel: AbstractChannel, names: Names, agencies: tuple[str, ...] = AGENCIES) -> None:
    """Remove a namespace's queues and exchanges (demo and test clean-up)."""
    for q in (*(names.ingress_queue(a) for a in agencies), names.acks, names.dead_letters,
              *(names.inbox(a) for a in agencies)):
        await channel.queue_delete(q)
    for x in (names.ingress, names.deliver, names.acks, names.dlx, names.events):
        await channel.exchange_delete(x)
