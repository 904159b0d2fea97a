"""Safeguarding timers on the injected clock: escalation of unacknowledged urgent deliveries and
expiry of undelivered ones with a signed non-delivery report. The clock moves; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from broker.clock import FrozenClock
from broker.demo.run import demo_body
from broker.safeguarding import verify_notice
from tests.integration.conftest import Env
from tests.integration.delivery_support import agency, deliveries, entries, eventually, person, refer, states

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
NOTICE_KEYS = {"iss", "aud", "jti", "kind", "delivery_id", "message_id", "recipient", "masp_type",
               "state", "reason", "audit_seq", "iat", "escalate_at"}


@pytest.fixture
def broker_clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
def clock(env: Env, broker_clock: FrozenClock) -> FrozenClock:
    for rt in env.adapters.values():  # the agencies live on the same (moving) time
        rt.clock = broker_clock
    return broker_clock


async def _settled(env: Env, message_id: str, expected: dict[str, str]) -> bool:
    return await states(env, message_id) == expected


@SQLITE_ONLY
async def test_unacknowledged_risk_alert_escalates_once_to_sender_and_ops(env: Env, clock: FrozenClock
                                                                         ) -> None:
    await env.adapters["police"].stop()  # the police system is down: nobody acknowledges
    body = {k: v for k, v in demo_body("risk_concern_alert").items() if k != "clinical_note"}
    mid = await refer(env, "nhs", "risk_concern_alert", body)
    assert await eventually(lambda: _settled(env, mid, {"police": "published",
                                                        "probation": "acknowledged"}))
    clock.advance(hours=1, minutes=59)
    assert (await env.service.watch.timers.sweep()).escalated == []  # type: ignore[union-attr]
    clock.advance(minutes=2)  # clause rca-nhs: escalation_hours 2
    await env.service.watch.timers.sweep()  # type: ignore[union-attr]
    await env.service.watch.timers.sweep()  # type: ignore[union-attr]  # and only once

    police = (await deliveries(env, mid))["police"]
    escalated = await entries(env, "escalated")
    assert [(e.delivery_id, e.sender, e.recipient, e.rules) for e in escalated] == [
        (police.delivery_id, "nhs", "police", ("safeguarding.escalation",))]
    assert "clause rca-nhs" in (escalated[0].reason or "")
    got = (await env.http.get("/v1/notices", headers=agency(env, "nhs"))).json()["notices"]
    assert [n["kind"] for n in got] == ["escalation"]
    notice = verify_notice(got[0]["token"], env.service.exchange)
    assert set(notice) == NOTICE_KEYS and notice["aud"] == "nhs"
    assert notice["delivery_id"] == police.delivery_id and notice["audit_seq"] == escalated[0].seq
    alerts = (await env.http.get("/v1/ops/alerts", headers=person(env))).json()["escalations"]
    assert [a["delivery_id"] for a in alerts] == [police.delivery_id]
    assert (await env.http.get("/v1/notices", headers=agency(env, "police"))).json()["notices"] == []

    await env.adapters["police"].start(env.connection)  # police back: acknowledged, alert cleared
    assert await eventually(lambda: _settled(env, mid, {"police": "acknowledged",
                                                        "probation": "acknowledged"}))
    assert (await env.http.get("/v1/ops/alerts", headers=person(env))).json()["escalations"] == []


async def test_undelivered_message_expires_with_a_signed_non_delivery_report(env: Env,
                                                                           clock: FrozenClock) -> None:
    await env.http.post("/v1/ops/routes/nhs/pause", headers=person(env))
    mid = await refer(env)
    assert await eventually(lambda: _settled(env, mid, {"probation": "acknowledged", "nhs": "queued"}))
    clock.advance(seconds=env.settings.delivery_expiry_s - 1)
    assert (await env.service.watch.timers.sweep()).expired == []  # type: ignore[union-attr]
    clock.advance(seconds=2)
    await env.service.watch.timers.sweep()  # type: ignore[union-attr]

    nhs = (await deliveries(env, mid))["nhs"]
    assert nhs.state == "expired" and nhs.jwe is None  # P9: no ciphertext kept for nobody
    expired = await entries(env, "expired")
    assert [(e.delivery_id, e.sender, e.recipient) for e in expired] == [(nhs.delivery_id, "police", "nhs")]
    reports = (await env.http.get("/v1/notices", params={"kind": "non_delivery"},
                                  headers=agency(env, "police"))).json()["notices"]
    assert len(reports) == 1
    report = verify_notice(reports[0]["token"], env.service.exchange)
    assert report["kind"] == "non_delivery" and report["state"] == "expired"
    assert report["aud"] == "police" and report["audit_seq"] == expired[0].seq
    status = (await env.http.get(f"/v1/messages/{mid}", headers=agency(env, "police"))).json()
    assert {d["recipient"]: d["state"] for d in status["deliveries"]} == {
        "probation": "acknowledged", "nhs": "expired"}

    await env.http.post("/v1/ops/routes/nhs/resume", headers=person(env))
    await asyncio.sleep(1.2)  # the relay runs: an expired delivery is never sent
    assert env.adapters["nhs"].received() == []


@SQLITE_ONLY
async def test_an_expired_delivery_is_never_replayed_and_its_dead_letter_is_purged(env: Env,
                                                                                  clock: FrozenClock) -> None:
    await env.adapters["nhs"].stop()
    mid = await refer(env)
    assert await eventually(lambda: _settled(env, mid, {"probation": "acknowledged", "nhs": "published"}))
    async with env.connection.channel() as ch:  # the nhs system refuses it: dead-lettered
        inbox = await ch.get_queue(env.service.names.inbox("nhs"), ensure=False)
        assert await eventually(lambda: _has_message(inbox))
        message = await inbox.get()
        await message.reject(requeue=False)
    assert await eventually(lambda: _settled(env, mid, {"probation": "acknowledged", "nhs": "dead_lettered"}))
    dead = (await env.http.get("/v1/ops/dead-letters", headers=person(env))).json()["dead_letters"]
    assert [d["delivery_id"] for d in dead] == [(await deliveries(env, mid))["nhs"].delivery_id]

    clock.advance(seconds=env.settings.delivery_expiry_s + 1)
    await env.service.watch.timers.sweep()  # type: ignore[union-attr]
    assert (await states(env, mid))["nhs"] == "expired"
    shown = (await env.http.get(f"/v1/ops/dead-letters/{dead[0]['id']}", headers=person(env))).json()
    assert shown["state"] == "purged" and shown["body_kept"] is False and shown["acted_by"] == "system"
    replay = await env.http.post(f"/v1/ops/dead-letters/{dead[0]['id']}/replay", headers=person(env))
    assert replay.status_code == 409
    assert [e.reason for e in await entries(env, "dead_letter_purged")] == [
        f"dead letter {dead[0]['id']} purged: delivery expired"]


async def _has_message(queue: object) -> bool:
    declared = await queue.channel.declare_queue(queue.name, passive=True)  # type: ignore[attr-defined]
    return bool(declared.declaration_result.message_count)
