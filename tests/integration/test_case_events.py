"""Case events on ``masp.events``: metadata only, routed ``<agency>.<event>``, from the audit log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aio_pika
import pytest

from broker.crypto.keys import AGENCIES
from broker.demo.run import demo_body
from tests.integration.conftest import Env
from tests.integration.delivery_support import SUBJECTS, eventually, refer, states

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ALLOWED = {"event", "seq", "at", "agency", "kind", "message_id", "delivery_id", "masp_type", "case_id",
           "sender", "recipient", "state", "rules"}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@SQLITE_ONLY
async def test_each_partner_hears_of_its_own_messages_without_personal_data(env: Env) -> None:
    heard: dict[str, list[dict[str, Any]]] = {"police": [], "nhs": [], "ops": []}
    async with env.connection.channel() as ch:
        for who in heard:
            q = await ch.declare_queue(exclusive=True, auto_delete=True)
            await q.bind(env.service.names.events, routing_key=f"{who}.#")

            async def on(message: aio_pika.abc.AbstractIncomingMessage, who: str = who) -> None:
                assert message.routing_key is not None and message.routing_key.startswith(f"{who}.")
                heard[who].append(json.loads(message.body))
                await message.ack()

            await q.consume(on)
        mid = await refer(env)
        assert await eventually(lambda: _acked(env, mid))
        async with env.connection.channel() as pub:  # a poison: ops hear of the dead letter
            deliver = await pub.get_exchange(env.service.names.deliver, ensure=False)
            await deliver.publish(aio_pika.Message(b"poison", message_id="p-1"), routing_key="nhs")

        async def all_heard() -> bool:
            return (len(heard["police"]) >= 6 and len(heard["nhs"]) >= 1
                    and any(e["event"] == "dead_letter.recorded" for e in heard["ops"]))

        assert await eventually(all_heard)
        await asyncio.sleep(0.3)  # nothing further is on its way

    police = sorted((e["event"], e.get("recipient")) for e in heard["police"])
    assert police == [("delivery.acknowledged", "nhs"), ("delivery.acknowledged", "probation"),
                      ("delivery.queued", "nhs"), ("delivery.queued", "probation"),
                      ("message.accepted", None), ("message.refused", "advocacy")]
    assert all(e["message_id"] == mid and e["sender"] == "police" for e in heard["police"])
    refused = next(e for e in heard["police"] if e["event"] == "message.refused")
    assert any(r.startswith("P6") for r in refused["rules"])
    assert [(e["event"], e["state"], e["masp_type"]) for e in heard["nhs"]] == [
        ("delivery.waiting", "queued", "case_referral")]
    assert [e["event"] for e in heard["ops"]] == ["dead_letter.recorded"]
    seqs = [e["seq"] for e in heard["police"]]
    assert len(set(seqs)) == len(seqs)  # seq identifies an event for de-duplication

    personal = {s for s in _strings(demo_body("case_referral")) if len(s) >= 4} - set(AGENCIES)
    personal |= {s["ref"] for s in SUBJECTS}
    for event in (e for events in heard.values() for e in events):
        assert set(event) <= ALLOWED
        assert not personal & set(_strings(event)), event


async def _acked(env: Env, message_id: str) -> bool:
    return await states(env, message_id) == {"probation": "acknowledged", "nhs": "acknowledged"}


@SQLITE_ONLY
async def test_events_nobody_listens_for_are_not_sent_back(env: Env) -> None:
    """A feed, not a delivery: RabbitMQ must not return each unheard event whole to the broker."""
    assert env.service.watch is not None
    returned: list[object] = []
    env.service.watch.events.channel.return_callbacks.add(lambda *args: returned.append(args))
    heard: list[dict[str, Any]] = []
    async with env.connection.channel() as ch:
        q = await ch.declare_queue(exclusive=True, auto_delete=True)
        await q.bind(env.service.names.events, routing_key="police.#")  # nhs, probation: nobody

        async def on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            heard.append(json.loads(message.body))
            await message.ack()

        await q.consume(on)
        mid = await refer(env)
        assert await eventually(lambda: _acked(env, mid))
        assert await eventually(lambda: _async(len(heard) >= 6))
        await asyncio.sleep(0.3)
    assert returned == []


async def _async(value: bool) -> bool:
    return value
