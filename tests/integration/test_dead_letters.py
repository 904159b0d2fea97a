"""Dead letters on the real RabbitMQ: reasons kept, poison out of the way, ops replay and purge."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from typer.testing import CliRunner

from broker.cli import app as cli
from broker.store import dead_letters as store
from broker.store.delivery_models import DeadLetterRow
from tests.integration.conftest import Env
from tests.integration.delivery_support import (
    deliveries,
    entries,
    eventually,
    person,
    refer,
    states,
)

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POISON = b"POISON-not-a-jwe: Claire Hutton, 14 Larkspur Road"  # what must never be printed


async def _dead(env: Env, count: int, state: str | None = None) -> list[DeadLetterRow]:
    found: list[DeadLetterRow] = []

    async def enough() -> bool:
        nonlocal found
        async with env.service.exchange.sessions() as s:
            found = list(await store.find(s, state=state))
        return len(found) >= count

    await eventually(enough)
    return found


async def _publish(env: Env, exchange: str, body: bytes, key: str, message_id: str) -> None:
    async with env.connection.channel(publisher_confirms=True) as ch:
        target = await ch.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(body, message_id=message_id,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key=key)


@SQLITE_ONLY
async def test_poison_interleaved_with_good_traffic_never_blocks(env: Env) -> None:
    names = env.service.names
    sent: list[str] = []
    for i in range(3):  # poison delivery, poison ack, good referral, in turn
        await _publish(env, names.deliver, POISON, "nhs", f"poison-{i}")
        await _publish(env, names.acks, POISON, "", f"bad-ack-{i}")
        sent.append(await refer(env))

    async def all_acknowledged() -> bool:
        found = [await states(env, m) for m in sent]
        return all(f == {"probation": "acknowledged", "nhs": "acknowledged"} for f in found)

    assert await eventually(all_acknowledged)
    dead = await _dead(env, 6)
    assert sorted((d.amqp_message_id or "", d.queue, d.reason) for d in dead) == sorted(
        [(f"poison-{i}", names.inbox("nhs"), "rejected") for i in range(3)]
        + [(f"bad-ack-{i}", names.acks, "rejected") for i in range(3)])
    received = {r["message"]["jti"] for r in env.adapters["nhs"].received()}
    assert received == set(sent)  # every good one, once; no poison handed over
    audited = await entries(env, "dead_lettered")
    assert sorted(e.reason or "" for e in audited) == sorted(
        f"rejected in {d.queue} (x-death count 1); dead letter {d.dead_letter_id}" for d in dead)
    # the listing is metadata only: the body is nowhere in it
    resp = await env.http.get("/v1/ops/dead-letters", headers=person(env))
    assert resp.status_code == 200 and len(resp.json()["dead_letters"]) == 6
    assert "Hutton" not in resp.text and "body_kept" in resp.text and '"body"' not in resp.text


@SQLITE_ONLY
async def test_crashing_consumer_dead_letters_after_the_delivery_limit(env: Env) -> None:
    """A message that crashes its consumer each time goes after x-delivery-limit attempts."""
    names = env.service.names
    await env.adapters["advocacy"].stop()  # a consumer of our own that fails on one message
    attempts: list[str] = []
    good: list[str] = []

    async def crashing(message: AbstractIncomingMessage) -> None:
        if message.message_id == "crash":
            attempts.append("crash")
            await message.nack(requeue=True)
        else:
            good.append(message.message_id or "")
            await message.ack()

    async with env.connection.channel() as ch:
        await ch.set_qos(prefetch_count=4)
        inbox = await ch.get_queue(names.inbox("advocacy"), ensure=False)
        tag = await inbox.consume(crashing)
        for i in range(3):
            await _publish(env, names.deliver, b"x", "advocacy", "crash" if i == 1 else f"good-{i}")
        await _publish(env, names.deliver, b"x", "advocacy", "good-3")
        dead = await _dead(env, 1)
        await inbox.cancel(tag)
    assert sorted(good) == ["good-0", "good-2", "good-3"]
    assert len(dead) == 1 and dead[0].reason == "delivery_limit" and dead[0].amqp_message_id == "crash"
    assert len(attempts) == env.settings.delivery_limit + 1  # the first delivery and 5 more


@SQLITE_ONLY
async def test_ops_replay_returns_a_dead_delivery_and_purge_drops_a_poison(env: Env) -> None:
    nhs = env.adapters["nhs"]
    await nhs.stop()
    mid = await refer(env)
    assert await eventually(lambda: _state_is(env, mid, "nhs", "published"))
    # the nhs system refuses the delivery (say, a stale key): RabbitMQ dead-letters it
    async with env.connection.channel() as ch:
        inbox = await ch.get_queue(env.service.names.inbox("nhs"), ensure=False)
        msg = await _get(inbox)
        await msg.reject(requeue=False)
    await _publish(env, env.service.names.deliver, POISON, "nhs", "poison-x")
    async with env.connection.channel() as ch:  # and a poison the adapter never saw
        inbox = await ch.get_queue(env.service.names.inbox("nhs"), ensure=False)
        await (await _get(inbox)).reject(requeue=False)
    dead = {d.amqp_message_id: d for d in await _dead(env, 2)}
    delivery_id = (await deliveries(env, mid))["nhs"].delivery_id
    assert dead[delivery_id].delivery_id == delivery_id and dead[delivery_id].recipient == "nhs"
    assert (await states(env, mid))["nhs"] == "dead_lettered"

    ig = await env.http.post(f"/v1/ops/dead-letters/{dead[delivery_id].dead_letter_id}/replay",
                             headers=person(env, "ig_officer"))
    assert ig.status_code == 403
    shown = await env.http.get(f"/v1/ops/dead-letters/{dead[delivery_id].dead_letter_id}",
                               headers=person(env))
    assert shown.json()["reason"] == "rejected" and shown.json()["masp_type"] == "case_referral"
    replayed = await env.http.post(f"/v1/ops/dead-letters/{dead[delivery_id].dead_letter_id}/replay",
                                   headers=person(env))
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["state"] == "replayed" and replayed.json()["body_kept"] is False
    again = await env.http.post(f"/v1/ops/dead-letters/{dead[delivery_id].dead_letter_id}/replay",
                                headers=person(env))
    assert again.status_code == 409
    purged = await env.http.post(f"/v1/ops/dead-letters/{dead['poison-x'].dead_letter_id}/purge",
                                 headers=person(env))
    assert purged.json()["state"] == "purged"

    await nhs.start(env.connection)
    assert await eventually(lambda: _state_is(env, mid, "nhs", "acknowledged"))
    assert [r["message"]["jti"] for r in nhs.received()] == [mid]
    kinds = [(e.kind.value, e.actor.user_id) for e in await entries(env) if e.kind.value in
             ("dead_lettered", "replayed", "dead_letter_purged")]
    assert kinds == [("dead_lettered", None), ("dead_lettered", None), ("replayed", "op-1"),
                     ("dead_letter_purged", "op-1")]
    queues = await env.http.get("/v1/ops/queues", headers=person(env))
    depth = {q["queue"]: q for q in queues.json()["queues"]}
    assert depth[env.service.names.inbox("nhs")]["consumers"] == 1
    assert depth[env.service.names.dead_letters]["messages"] == 0
    assert queues.json()["deliveries"]["nhs"] == {"acknowledged": 1}


@SQLITE_ONLY
async def test_dlq_cli_lists_shows_replays_and_purges_metadata_only(env: Env) -> None:
    await _publish(env, env.service.names.deliver, POISON, "nhs", "poison-cli")
    (dead,) = await _dead(env, 1)
    runner = CliRunner()
    cli_env = {"MASP_STATE_DIR": str(env.settings.state_dir), "MASP_NAMESPACE": env.settings.namespace,
               "MASP_DATABASE_URL": env.settings.db_url, "MASP_DSA_DIR": str(env.settings.dsa_dir),
               "MASP_AMQP_URL": env.settings.amqp_url, "MASP_DEPLOYMENT": env.settings.deployment}

    async def masp(*args: str) -> str:
        result = await asyncio.to_thread(runner.invoke, cli, list(args), env=cli_env)
        assert result.exit_code == 0, result.output
        assert "Hutton" not in result.output and "POISON" not in result.output
        return result.output

    listed = await masp("dlq", "list")
    assert dead.dead_letter_id in listed and "rejected" in listed and "1 dead letter(s)" in listed
    shown = json.loads(await masp("dlq", "show", dead.dead_letter_id))
    assert shown["queue"] == env.service.names.inbox("nhs") and shown["size"] == len(POISON)
    assert "replayed" in await masp("dlq", "replay", dead.dead_letter_id, "--by", "op-cli")
    # the replayed poison is back in inbox.nhs, refused again: a second, separate dead letter
    both = await _dead(env, 2)
    assert {d.state for d in both} == {"replayed", "pending"}
    assert "purged" in await masp("dlq", "purge", "--all", "--yes", "--by", "op-cli")
    assert "0 dead letter(s)" in await masp("dlq", "list")
    assert "2 dead letter(s)" in await masp("dlq", "list", "--state", "all")
    actors = [(e.kind.value, e.actor.auth, e.actor.user_id) for e in await entries(env)
              if e.kind.value in ("replayed", "dead_letter_purged")]
    assert actors == [("replayed", "cli", "op-cli"), ("dead_letter_purged", "cli", "op-cli")]


async def _state_is(env: Env, message_id: str, recipient: str, state: str) -> bool:
    return (await states(env, message_id)).get(recipient) == state


async def _get(queue: aio_pika.abc.AbstractQueue) -> AbstractIncomingMessage:
    for _ in range(200):
        msg = await queue.get(fail=False, no_ack=False)
        if msg is not None:
            return msg
        await asyncio.sleep(0.05)
    raise AssertionError("nothing arrived")


@SQLITE_ONLY
async def test_dlq_collect_moves_waiting_dead_letters_when_no_keeper_runs(env: Env) -> None:
    assert env.service.watch is not None
    await env.service.watch.stop()  # as if no broker were running
    # A dead letter waiting in the queue, as RabbitMQ leaves it (with its x-death record);
    # published straight to the dead-letter exchange so this test does not race RabbitMQ's
    # own dead-lettering, which test_transport covers.
    names = env.service.names
    async with env.connection.channel(publisher_confirms=True) as ch:
        dlx = await ch.get_exchange(names.dlx, ensure=False)
        await dlx.publish(aio_pika.Message(POISON, message_id="poison-offline",
                                           delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                           headers={"x-death": [{
                                               "reason": "rejected", "queue": names.inbox("nhs"),
                                               "count": 1, "exchange": names.deliver,
                                               "routing-keys": ["nhs"]}]}),
                          routing_key="nhs")
    async with env.connection.channel() as ch:
        dead_q = await ch.get_queue(env.service.names.dead_letters, ensure=False)
        assert await eventually(lambda: _depth(dead_q, 1))
    cli_env = {"MASP_STATE_DIR": str(env.settings.state_dir), "MASP_NAMESPACE": env.settings.namespace,
               "MASP_DATABASE_URL": env.settings.db_url, "MASP_DSA_DIR": str(env.settings.dsa_dir),
               "MASP_AMQP_URL": env.settings.amqp_url, "MASP_DEPLOYMENT": env.settings.deployment}
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", "collect"], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "collected 1 dead letter(s)" in result.output
    (dead,) = await _dead(env, 1)
    assert dead.amqp_message_id == "poison-offline" and dead.reason == "rejected"


async def _depth(queue: aio_pika.abc.AbstractQueue, count: int) -> bool:
    declared = await queue.channel.declare_queue(queue.name, passive=True)
    return declared.declaration_result.message_count == count
