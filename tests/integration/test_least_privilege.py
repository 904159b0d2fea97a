"""deploy/rabbitmq/definitions.json, loaded into a fresh vhost, enforces least privilege.

The users and permissions are taken from the file itself (renamed with a unique suffix and
given random passwords, so the test never touches real accounts) and imported with
``rabbitmqctl import_definitions``; the broker's own user declares the topology; then each
agency is tried against what it must and must not be able to do.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import aio_pika
import aiormq
import pytest

from adapters.runtime import ingress_message
from broker.transport import topology
from tests.integration.conftest import REPO
from tests.integration.rabbitmq_users import import_definitions, password_hash, rabbitmqctl

DEFINITIONS = REPO / "deploy" / "rabbitmq" / "definitions.json"
REFUSED = (aiormq.exceptions.ChannelAccessRefused, aio_pika.exceptions.ChannelClosed)


@dataclass
class Vhost:
    name: str
    users: dict[str, str]  # name in the definitions -> unique name here
    passwords: dict[str, str]

    def url(self, user: str) -> str:
        return (f"amqp://{quote(self.users[user])}:{quote(self.passwords[user])}@127.0.0.1:5672/"
                f"{quote(self.name, safe='')}")


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    defs = json.loads(DEFINITIONS.read_text())
    suffix = uuid.uuid4().hex[:10]
    name = f"masp-lp-{suffix}"
    users = {u["name"]: f"{u['name']}-{suffix}" for u in defs["users"]}
    passwords = {u: secrets.token_urlsafe(18) for u in users}
    local = {
        "vhosts": [{"name": name}],
        "users": [{**u, "name": users[u["name"]], "password_hash": password_hash(passwords[u["name"]])}
                  for u in defs["users"]],
        "permissions": [{**p, "user": users[p["user"]], "vhost": name} for p in defs["permissions"]],
        "topic_permissions": [{**t, "user": users[t["user"]], "vhost": name}
                              for t in defs["topic_permissions"]],
    }
    import_definitions(local)
    try:
        yield Vhost(name, users, passwords)
    finally:  # clean-up in parallel: each rabbitmqctl call starts a VM
        for proc in [rabbitmqctl("delete_vhost", name),
                     *(rabbitmqctl("delete_user", u) for u in users.values())]:
            proc.communicate(timeout=60)


async def _refused(coro: object) -> bool:
    try:
        await coro  # type: ignore[misc]
    except REFUSED:
        return True
    return False


async def test_police_may_submit_and_read_its_own_but_nothing_else(vhost: Vhost) -> None:
    names = topology.Names()
    broker = await aio_pika.connect(vhost.url("masp-broker"))
    police = await aio_pika.connect(vhost.url("police"))
    police_robust = await aio_pika.connect_robust(vhost.url("police"))  # as adapters connect
    nhs = await aio_pika.connect(vhost.url("nhs"))
    try:
        async with broker.channel() as ch:  # the broker's own user may declare the topology
            await topology.declare(ch, names)

        # allowed: submit to ingress (its own routing key and user_id, a reply queue of its own),
        # acknowledge, consume its own inbox, bind its own events
        async with police_robust.channel(publisher_confirms=True, on_return_raises=True) as ch:
            reply = await ch.declare_queue(exclusive=True, auto_delete=True)  # robust: amq_<hex>
            await reply.consume(_ignore)
            ingress = await ch.get_exchange(names.ingress, ensure=False)
            await ingress.publish(ingress_message(b"jwe", police_robust, reply_to=reply.name),
                                  routing_key="police", mandatory=True)
            acks = await ch.get_exchange(names.acks, ensure=False)
            await acks.publish(aio_pika.Message(b"ack"), routing_key="", mandatory=True)
            await (await ch.get_queue(names.inbox("police"), ensure=False)).consume(_ignore)
            mine = await ch.declare_queue("events.police.cases", exclusive=True)
            await mine.bind(names.events, routing_key="police.#")
        async with broker.channel() as ch:
            q = await ch.declare_queue(names.ingress_queue("police"), passive=True)
            assert q.declaration_result.message_count == 1  # the submission arrived, in police's queue

        # refused, each on a fresh channel (a refusal closes the channel)
        async def try_police(action: str) -> bool:
            ch = await police.channel(publisher_confirms=True)
            if action == "consume inbox.nhs":
                return await _refused((await ch.get_queue(names.inbox("nhs"), ensure=False)).consume(_ignore))
            if action == "publish masp.deliver":
                target = await ch.get_exchange(names.deliver, ensure=False)
                return await _refused(target.publish(aio_pika.Message(b"forged"), routing_key="nhs"))
            if action.startswith("submit with routing key "):  # topic permissions on masp.ingress
                target = await ch.get_exchange(names.ingress, ensure=False)
                return await _refused(target.publish(ingress_message(b"jwe", police),
                                                     routing_key=action.rsplit(" ", 1)[1]))
            if action == "submit as another user":  # RabbitMQ checks user_id against the login
                target = await ch.get_exchange(names.ingress, ensure=False)
                forged = aio_pika.Message(b"jwe", user_id=vhost.users["nhs"])
                return await _refused(target.publish(forged, routing_key="police"))
            if action == "publish to its ingress queue directly":
                return await _refused(ch.default_exchange.publish(
                    ingress_message(b"jwe", police), routing_key=names.ingress_queue("police")))
            if action == "publish masp.events":
                target = await ch.get_exchange(names.events, ensure=False)
                return await _refused(target.publish(aio_pika.Message(b"{}"), routing_key="police.x"))
            if action == "declare inbox queue":
                return await _refused(ch.declare_queue("inbox.police2", durable=True))
            queue = await ch.declare_queue(f"events.police.try{len(action)}", exclusive=True)
            return await _refused(queue.bind(names.events, routing_key=action))

        for action in ("consume inbox.nhs", "publish masp.deliver", "publish masp.events",
                       "declare inbox queue", "nhs.#", "#", "*.delivery.waiting",
                       "submit with routing key nhs", "submit with routing key #",
                       "submit with routing key ", "submit as another user",
                       "publish to its ingress queue directly"):
            assert await try_police(action), f"police could {action}"

        # the same file lets nhs read its own inbox (the regexes are per agency, not a typo)
        async with nhs.channel() as ch:
            await (await ch.get_queue(names.inbox("nhs"), ensure=False)).consume(_ignore)
    finally:
        for conn in (police, police_robust, nhs):
            await conn.close()
        async with broker.channel() as ch:
            await topology.delete(ch, names)
        await broker.close()


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)
