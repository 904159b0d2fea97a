"""Delivery states a sender and ops can query, and one route paused and resumed."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import Env
from tests.integration.delivery_support import agency, entries, eventually, person, refer, states


async def test_sender_sees_its_own_delivery_states_and_a_paused_route_holds_them(env: Env) -> None:
    paused = await env.http.post("/v1/ops/routes/nhs/pause", headers=person(env),
                                 json={"reason": "recipient_maintenance"})
    assert paused.status_code == 200, paused.text
    assert (await env.http.post("/v1/ops/routes/nhs/pause", headers=person(env))).status_code == 409
    mid = await refer(env)
    assert await eventually(lambda: _is(env, mid, {"probation": "acknowledged", "nhs": "queued"}))
    await asyncio.sleep(1.2)  # a relay cycle or more: the paused route stays queued
    assert (await states(env, mid))["nhs"] == "queued" and not env.adapters["nhs"].received()

    status = await env.http.get(f"/v1/messages/{mid}", headers=agency(env, "police"))
    assert status.status_code == 200, status.text
    body = status.json()
    assert {d["recipient"]: d["decision"] for d in body["decisions"]} == {
        "probation": "permit", "nhs": "permit_with_redaction", "advocacy": "deny"}
    assert {d["recipient"]: d["state"] for d in body["deliveries"]} == {
        "probation": "acknowledged", "nhs": "queued"}
    # high SASH concern: the nhs delivery carries a safeguarding deadline
    assert next(d for d in body["deliveries"] if d["recipient"] == "nhs")["escalate_at"]
    # another agency, even a recipient, cannot read the sender's view
    other = await env.http.get(f"/v1/messages/{mid}", headers=agency(env, "probation"))
    assert other.status_code == 404
    queued = await env.http.get("/v1/deliveries", params={"state": "queued"},
                                headers=agency(env, "police"))
    assert [(d["message_id"], d["recipient"]) for d in queued.json()["deliveries"]] == [(mid, "nhs")]
    assert (await env.http.get("/v1/deliveries", headers=agency(env, "nhs"))).json()["deliveries"] == []
    assert (await env.http.get("/v1/ops/deliveries", headers=agency(env, "police"))).status_code == 403

    resumed = await env.http.post("/v1/ops/routes/nhs/resume", headers=person(env))
    assert resumed.status_code == 200
    assert await eventually(lambda: _is(env, mid, {"probation": "acknowledged", "nhs": "acknowledged"}))
    ops = await env.http.get("/v1/ops/deliveries", params={"message_id": mid}, headers=person(env))
    assert sorted(d["state"] for d in ops.json()["deliveries"]) == ["acknowledged", "acknowledged"]
    audited = [(e.kind.value, e.recipient, e.reason, e.actor.user_id) for e in await entries(env)
               if e.kind.value.startswith("route_")]
    assert audited == [("route_paused", "nhs", "recipient_maintenance", "op-1"),
                       ("route_resumed", "nhs", None, "op-1")]
    assert (await env.http.get("/v1/ops/routes", headers=person(env))).json() == {"paused": []}


async def _is(env: Env, message_id: str, expected: dict[str, str]) -> bool:
    return await states(env, message_id) == expected
