"""RabbitMQ behaviour the delivery guarantees rest on, on the real broker."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import select

from adapters.runtime import wait_for
from broker import wire
from broker.demo.run import demo_body
from broker.store import dead_letters as dead_letter_store
from broker.store.delivery_models import DeadLetterRow
from broker.store.models import DeliveryRow
from broker.transport import topology
from tests.integration.conftest import AMQP_URL, Env

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}]


@pytest.fixture
async def amqp() -> AbstractRobustConnection:
    conn = await aio_pika.connect_robust(AMQP_URL)
    yield conn  # type: ignore[misc]
    await conn.close()


async def test_topology_is_idempotent_and_quorum(amqp: AbstractRobustConnection) -> None:
    names = topology.Names(f"t{uuid.uuid4().hex[:10]}.")
    async with amqp.channel() as ch:
        await topology.declare(ch, names)
        await topology.declare(ch, names)  # a second process starting declares the same
    try:
        async with amqp.channel() as ch:
            # re-declaring as a classic queue is refused: the queue really is a quorum queue
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await ch.declare_queue(names.inbox("nhs"), durable=True,
                                       arguments={"x-queue-type": "classic"})
        async with amqp.channel() as ch:
            # and it carries exactly the delivery limit and dead-letter settings declared
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await ch.declare_queue(names.inbox("nhs"), durable=True,
                                       arguments=topology.quorum_args(names.dlx, 99))
    finally:
        async with amqp.channel() as ch:
            await topology.delete(ch, names)


@SQLITE_ONLY
async def test_unroutable_publish_raises(env: Env) -> None:
    async with env.connection.channel(publisher_confirms=True, on_return_raises=True) as ch:
        deliver = await ch.get_exchange(env.service.names.deliver, ensure=False)
        with pytest.raises(aio_pika.exceptions.PublishError):
            await deliver.publish(aio_pika.Message(b"x"), routing_key="no-such-agency", mandatory=True)


async def _dead_letters(env: Env, count: int) -> list[DeadLetterRow]:
    """Dead letters as the broker's keeper recorded them from ``masp.dead-letters``."""
    found: list[DeadLetterRow] = []
    for _ in range(200):
        async with env.service.exchange.sessions() as s:
            found = list(await dead_letter_store.find(s))
        if len(found) >= count:
            break
        await asyncio.sleep(0.05)
    return found


@SQLITE_ONLY
async def test_unverifiable_delivery_is_dead_lettered_not_handed_over(env: Env) -> None:
    async with env.connection.channel(publisher_confirms=True, on_return_raises=True) as ch:
        deliver = await ch.get_exchange(env.service.names.deliver, ensure=False)
        await deliver.publish(aio_pika.Message(b"not-a-jwe", message_id="poison-1",
                                               delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                              routing_key="nhs")
    dead = await _dead_letters(env, 1)
    assert len(dead) == 1 and dead[0].amqp_message_id == "poison-1"
    # the reason and the queue come from RabbitMQ's x-death record
    assert dead[0].reason == "rejected" and dead[0].queue == env.service.names.inbox("nhs")
    assert env.adapters["nhs"].received() == []


@SQLITE_ONLY
async def test_redelivered_delivery_reaches_the_application_once(env: Env) -> None:
    police = env.adapters["police"]
    _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-1",
                            purpose="risk_management", subjects=SUBJECTS)
    nhs = env.adapters["nhs"]
    handed_over: list[str] = []

    async def application(delivery: wire.Delivery) -> None:
        handed_over.append(delivery.delivery_id)

    nhs.on_delivery = application
    mid = (await police.submit_http(env.http, jwe)).json()["message_id"]
    assert await wait_for(lambda: len(nhs.received()) == 1)
    async with env.service.exchange.sessions() as s:
        row = (await s.execute(select(DeliveryRow).where(DeliveryRow.message_id == mid,
                                                         DeliveryRow.recipient == "nhs"))).scalar_one()
    raw = (nhs.home / "deliveries" / f"{row.delivery_id}.jwe").read_bytes()
    # the relay crashed after publishing and before marking: the same delivery arrives again
    async with env.connection.channel(publisher_confirms=True) as ch:
        deliver = await ch.get_exchange(env.service.names.deliver, ensure=False)
        for _ in range(2):
            await deliver.publish(aio_pika.Message(raw, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                  routing_key="nhs")
    async with env.connection.channel() as ch:
        inbox = await ch.get_queue(env.service.names.inbox("nhs"), ensure=False)
        for _ in range(100):  # wait until the adapter has consumed both copies
            declared = await ch.declare_queue(inbox.name, passive=True)
            if declared.declaration_result.message_count == 0:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert handed_over == [row.delivery_id]
    assert len(nhs.received()) == 1
    async with env.service.exchange.sessions() as s:
        row = await s.get(DeliveryRow, row.delivery_id)
    assert row is not None and row.state == "acknowledged" and row.jwe is None


async def test_a_committed_delivery_goes_out_without_being_read_back(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay publishes what its own process has just committed as it is (broker/outbox.py):
    no claim statement reads the rows back; they are marked published as before."""
    import broker.transport.workers as workers

    claims: list[int] = []
    claim = workers.claim_queued

    async def counted(*args: object, **kwargs: object) -> object:
        claims.append(1)
        return await claim(*args, **kwargs)  # type: ignore[arg-type]

    outbox = env.service.exchange.outbox
    outbox.sweep_s = 3600.0  # no periodic sweep during the test: only fresh deliveries go out
    outbox.sweep_due()
    await asyncio.sleep(0.1)  # a sweep already under way finishes
    monkeypatch.setattr(workers, "claim_queued", counted)
    police = env.adapters["police"]
    mid = wire.new_id()
    _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-FRESH-1",
                            purpose="risk_management", subjects=SUBJECTS, jti=mid)
    reply = await police.submit_amqp(env.amqp["police"], jwe)
    assert "audit_seq" in reply, reply

    def received(agency: str) -> list[dict[str, object]]:
        return [r for r in env.adapters[agency].received() if r["message"]["jti"] == mid]

    assert await wait_for(lambda: len(received("probation")) == 1 and len(received("nhs")) == 1, 10)
    assert claims == []
    async with env.service.exchange.sessions() as s:
        states = (await s.execute(select(DeliveryRow.state).where(
            DeliveryRow.message_id == mid))).scalars().all()  # type: ignore[arg-type]
    assert sorted(states) in (["published", "published"], ["acknowledged", "published"],
                              ["acknowledged", "acknowledged"])
    assert len(outbox) == 0


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_a_fresh_delivery_another_relay_holds_is_left_to_it(env: Env) -> None:
    from broker.store.deliveries import QueuedDelivery, lock_queued

    assert env.service.workers is not None
    for task in env.service.workers._tasks:  # this test plays the relay itself
        if task.get_name() == "outbox-relay":
            task.cancel()
    exchange = env.service.exchange
    fresh = QueuedDelivery("held-1", "m-held", "police", "nhs", "case_referral", "x", {})
    async with exchange.audit.transaction() as batch:
        batch.session.add(DeliveryRow(
            delivery_id="held-1", message_id="m-held", sender="police", recipient="nhs",
            masp_type="case_referral", state="queued", audit_seq=0, jwe="x", created_at=exchange.clock()))
        batch.after_commit.append(lambda: exchange.outbox.committed([fresh]))
    assert len(exchange.outbox) == 1
    exchange.outbox.sweep_s = 3600.0
    exchange.outbox.sweep_due()  # the next round takes the fresh delivery, not the table
    async with exchange.sessions() as other, other.begin():
        assert await lock_queued(other, ["held-1"]) == {"held-1"}  # another relay is publishing it
        assert await env.service.workers.relay_once() == 0
        assert len(exchange.outbox) == 0  # taken, and left to the sweep
        await other.rollback()
    async with exchange.sessions() as s:
        row = await s.get(DeliveryRow, "held-1")
    assert row is not None and row.state == "queued"  # left in the table, for whoever holds it


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_relays_never_claim_the_same_deliveries(env: Env) -> None:
    from broker.store.deliveries import claim_queued

    # this test plays the relays itself: stop the broker's own relay task first
    assert env.service.workers is not None
    for task in env.service.workers._tasks:
        if task.get_name() == "outbox-relay":
            task.cancel()
    async with env.service.exchange.audit.transaction() as batch:  # queue rows the relay has not seen
        for i in range(6):
            batch.session.add(DeliveryRow(
                delivery_id=f"claim-{i}", message_id="m-claim", sender="police", recipient="nhs",
                masp_type="case_referral", state="queued", audit_seq=0, jwe="x",
                created_at=env.service.exchange.clock()))
    sessions = env.service.exchange.sessions
    async with sessions() as first, first.begin():
        mine = {r.delivery_id for r in await claim_queued(first, 4, postgres=True)
                if r.delivery_id.startswith("claim-")}
        async with sessions() as second, second.begin():
            theirs = {r.delivery_id for r in await claim_queued(second, 10, postgres=True)
                      if r.delivery_id.startswith("claim-")}
        assert mine and theirs
        assert not mine & theirs  # skipped, not shared and not waited on
        assert mine | theirs <= {f"claim-{i}" for i in range(6)}
        await first.rollback()
