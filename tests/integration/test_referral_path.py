"""Issue 2's acceptance: one referral, police → broker → partners, on the real stack."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from adapters.runtime import wait_for
from broker import wire
from broker.audit.entry import AuditEntry, payload_digest
from broker.crypto import jose, sdjwt
from broker.crypto.keys import AgencyKeys
from broker.demo.run import demo_body
from broker.store.audit_export import verify_database
from broker.store.models import AuditRow, DeliveryRow
from schemas import NEVER_TO_NHS, data_classes
from tests.integration.conftest import Env

SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


async def _entries(env: Env) -> list[AuditEntry]:
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).order_by(AuditRow.seq))).scalars().all()  # type: ignore[arg-type]
    return [AuditEntry.from_leaf(r.leaf) for r in rows]


def _received(env: Env, agency: str, message_id: str) -> list[dict[str, Any]]:
    return [r for r in env.adapters[agency].received() if r["message"]["jti"] == message_id]


async def _submit(env: Env, jwe: str, agency: str = "police") -> Any:
    return await env.adapters[agency].submit_http(env.http, jwe)


async def test_referral_reaches_each_partner_minimised(env: Env) -> None:
    body = demo_body("case_referral")
    police = env.adapters["police"]
    message, jwe = police.compose("case_referral", body, case_id="C-1", purpose="risk_management",
                                  subjects=SUBJECTS)
    resp = await _submit(env, jwe)
    assert resp.status_code == 202, resp.text
    receipt = resp.json()
    mid = receipt["message_id"]
    _, signed = jose.verify(receipt["receipt"], lambda kid: env.registry.get(kid, use="sig",
                            agency="broker"), wire.TYP_RECEIPT)
    assert signed["message_id"] == mid and signed["audit_seq"] == receipt["audit_seq"]
    # who signed it, for whom, when, and which bytes: the SD-JWT as the sender composed it
    assert (signed["iss"], signed["aud"], type(signed["iat"])) == ("broker", "police", int)
    assert signed["payload_digest"] == payload_digest(message.serialize())
    assert signed["received_at"].endswith("+00:00")
    submitted = [e for e in await _entries(env) if e.kind == "submitted" and e.message_id == mid]
    assert [e.payload_digest for e in submitted] == [signed["payload_digest"]]
    decisions = {d["recipient"]: d["decision"] for d in receipt["decisions"]}
    assert decisions == {"probation": "permit", "nhs": "permit_with_redaction", "advocacy": "deny"}

    assert await wait_for(lambda: bool(_received(env, "probation", mid)) and bool(_received(env, "nhs", mid)))
    probation = _received(env, "probation", mid)
    assert len(probation) == 1 and probation[0]["fields"] == body

    nhs = _received(env, "nhs", mid)
    classes = data_classes("case_referral")
    assert len(nhs) == 1
    assert not [f for f in nhs[0]["fields"] if classes[f] in NEVER_TO_NHS]
    assert {"perpetrator_name", "offence_codes", "orders", "sdash_yes_count"} <= set(nhs[0]["fields"])
    assert "victim_address" in body and "victim_address" not in nhs[0]["fields"]

    # nhs verifies the police signature over exactly the bytes it received
    raw = (env.adapters["nhs"].home / "deliveries" / f"{nhs[0]['delivery']['jti']}.jwe").read_bytes()
    delivery = wire.open_delivery(raw, env.keys["nhs"], env.registry)
    assert delivery.message.token.jwt == message.jwt  # the police JWT, unchanged
    assert delivery.message.header["kid"] == env.keys["police"].sig.kid
    assert set(delivery.message.claims) == set(nhs[0]["fields"])
    assert delivery.token["withheld"] == len(body) - len(nhs[0]["fields"])

    assert not _received(env, "advocacy", mid)
    entries = await _entries(env)
    refusal = [e for e in entries if e.message_id == mid and e.recipient == "advocacy"]
    assert len(refusal) == 1 and refusal[0].kind == "refused" and refusal[0].decision == "deny"
    assert any(r.startswith("P6") for r in refusal[0].rules)
    nhs_entry = next(e for e in entries if e.message_id == mid and e.recipient == "nhs")
    assert nhs_entry.kind == "disclosed"
    assert "victim_address" in nhs_entry.fields_withheld
    # the body fields nhs got, and the perpetrator's reference (its clause grants his
    # identity); never the victim's
    assert {f.name for f in nhs_entry.fields_disclosed} == {*nhs[0]["fields"], "subject.suspect"}
    assert [s["pseudonymous"] for s in nhs[0]["message"]["subjects"]] == [False]

    async def states() -> set[str]:
        async with env.service.exchange.sessions() as s:
            rows = (await s.execute(select(DeliveryRow).where(DeliveryRow.message_id == mid))).scalars().all()
        return {r.state for r in rows}

    for _ in range(100):
        if await states() == {"acknowledged"}:
            break
        await asyncio.sleep(0.05)
    assert await states() == {"acknowledged"}
    kinds = [e.kind for e in await _entries(env) if e.message_id == mid]
    assert kinds.count("acknowledged") == 2
    report = await verify_database(env.service)
    assert report.ok, report.problem


async def test_no_personal_data_in_audit_leaves(env: Env) -> None:
    body = demo_body("case_referral")
    _, jwe = env.adapters["police"].compose("case_referral", body, case_id="C-2",
                                            purpose="risk_management", subjects=SUBJECTS)
    assert (await _submit(env, jwe)).status_code == 202
    async with env.service.exchange.sessions() as s:
        leaves = b"\n".join(r.leaf for r in (await s.execute(select(AuditRow))).scalars().all())
    for needle in (b"Hutton", b"Marsh", b"Larkspur", b"SO15", b"07700", b"19/4471023K", b"VIC-1"):
        assert needle not in leaves


async def _assert_refused_and_audited(env: Env, jwe: str, status: int, code: str,
                                      agency: str = "police") -> None:
    before = len(await _entries(env))
    resp = await _submit(env, jwe, agency)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == code and problem["status"] == status and problem["type"].endswith(code)
    # acknowledgements of earlier deliveries may land meanwhile; exactly one refusal must
    new = [e for e in (await _entries(env))[before:] if e.kind == "refused"]
    assert len(new) == 1
    assert new[0].rules == (f"ingress.{code}",)
    assert new[0].decision == "deny"
    assert new[0].payload_digest is not None


async def test_tampered_ciphertext_refused(env: Env) -> None:
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"),
                                            case_id="C-1", purpose="risk_management", subjects=SUBJECTS)
    parts = jwe.split(".")
    ct = bytearray(jose.b64url_decode(parts[3]))
    ct[-1] ^= 1
    parts[3] = jose.b64url_encode(bytes(ct))
    await _assert_refused_and_audited(env, ".".join(parts), 400, "decryption-failed")


async def test_wrong_signature_refused(env: Env) -> None:
    police = env.adapters["police"]
    message, _ = police.compose("case_referral", demo_body("case_referral"), case_id="C-1",
                                purpose="risk_management", subjects=SUBJECTS)
    head, payload, sig = message.jwt.split(".")
    forged = sdjwt.SdJwt(f"{head}.{payload}.{sig[:-4]}AAAA", message.disclosures)
    jwe = wire.seal_submission(forged, env.registry.current("broker", "enc"))
    await _assert_refused_and_audited(env, jwe, 401, "signature-invalid")


async def test_unknown_sender_refused(env: Env) -> None:
    stranger = AgencyKeys.generate("council", env.service.exchange.clock().date())
    message = wire.compose_message(stranger, "case_referral", demo_body("case_referral"), case_id="C-1",
                                   purpose="risk_management", subjects=SUBJECTS,
                                   now=env.service.exchange.clock())
    jwe = wire.seal_submission(message, env.registry.current("broker", "enc"))
    # the police credentials are fine; the message inside claims an unregistered sender
    await _assert_refused_and_audited(env, jwe, 401, "unknown-sender")


async def test_replayed_jti_refused(env: Env) -> None:
    police = env.adapters["police"]
    body = demo_body("case_referral")
    first, jwe = police.compose("case_referral", body, case_id="C-1", purpose="risk_management",
                                subjects=SUBJECTS)
    assert (await _submit(env, jwe)).status_code == 202
    # the exact same submission again: the original receipt, nothing delivered twice
    again = await _submit(env, jwe)
    assert again.status_code == 202
    mid = json.loads(again.text)["message_id"]
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(DeliveryRow).where(DeliveryRow.message_id == mid))).scalars().all()
    assert len(rows) == 2  # probation and nhs, once each
    # other content under the same jti: refused and audited
    jti = wire.verify_submission(first.serialize(), env.registry, env.service.exchange.clock()).message_id
    _, other = police.compose("case_referral", {**body, "sdash_yes_count": 3}, case_id="C-1",
                              purpose="risk_management", subjects=SUBJECTS, jti=jti)
    await _assert_refused_and_audited(env, other, 409, "replay")


async def test_expired_message_refused(env: Env) -> None:
    police = env.adapters["police"]
    clock = env.service.exchange.clock
    message = wire.compose_message(police.keys, "case_referral", demo_body("case_referral"),
                                   case_id="C-1", purpose="risk_management", subjects=SUBJECTS,
                                   now=clock() - timedelta(hours=3), ttl=timedelta(hours=1))
    jwe = wire.seal_submission(message, env.registry.current("broker", "enc"))
    await _assert_refused_and_audited(env, jwe, 400, "expired")


async def test_schema_violation_refused(env: Env) -> None:
    body = {**demo_body("case_referral"), "victim_shoe_size": 6}
    _, jwe = env.adapters["police"].compose("case_referral", body, case_id="C-1",
                                            purpose="risk_management", subjects=SUBJECTS)
    await _assert_refused_and_audited(env, jwe, 422, "schema-invalid")


async def test_agency_may_not_submit_as_another(env: Env) -> None:
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"),
                                            case_id="C-1", purpose="risk_management", subjects=SUBJECTS)
    await _assert_refused_and_audited(env, jwe, 400, "malformed", agency="probation")


async def test_credentials_are_required_and_single_use(env: Env) -> None:
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"),
                                            case_id="C-1", purpose="risk_management", subjects=SUBJECTS)
    resp = await env.http.post("/v1/messages", content=jwe)
    assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"
    assertion = wire.sign_agency_auth(env.keys["police"], env.service.exchange.clock())
    headers = {"authorization": f"Bearer {assertion}", "content-type": "application/jose"}
    assert (await env.http.post("/v1/messages", content=jwe, headers=headers)).status_code == 202
    reused = await env.http.post("/v1/messages", content=jwe, headers=headers)
    assert reused.status_code == 401 and "already used" in reused.json()["detail"]


async def test_submission_over_amqp(env: Env) -> None:
    police = env.adapters["police"]
    _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-1",
                            purpose="risk_management", subjects=SUBJECTS)
    reply = await police.submit_amqp(env.amqp["police"], jwe)
    mid = reply["message_id"]
    assert await wait_for(lambda: bool(_received(env, "probation", mid)))
    refused = await police.submit_amqp(env.amqp["police"], "not.a.jwe")
    assert refused["status"] == 400 and refused["code"] == "malformed"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_jwks_and_health(env: Env) -> None:
    assert (await env.http.get("/healthz")).json() == {"status": "alive"}
    ready = await env.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    broker_keys = (await env.http.get("/.well-known/jwks.json")).json()["keys"]
    agency_keys = (await env.http.get("/v1/agency-keys")).json()["keys"]
    # the broker's keys alone at the well-known address: no agency key can pass for the broker's
    assert {k["masp_agency"] for k in broker_keys} == {"broker"}
    assert {k["kid"] for k in broker_keys} == {env.registry.current("broker", u).kid for u in ("sig", "enc")}
    assert {k["masp_agency"] for k in agency_keys} == {"police", "probation", "nhs", "advocacy"}
    assert env.keys["police"].sig.kid in {k["kid"] for k in agency_keys}
    assert all(k["kid"].startswith(f"{k['masp_agency']}-") for k in agency_keys)
    assert not any("d" in k for k in broker_keys + agency_keys)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_roles_and_explain(env: Env) -> None:
    from broker.api.auth import issue_user_token

    now = env.service.exchange.clock()
    broker_keys = env.service.exchange.broker
    ig = {"authorization": f"Bearer {issue_user_token(broker_keys, 'ig-1', 'ig_officer', now)}"}
    ops = {"authorization": f"Bearer {issue_user_token(broker_keys, 'ops-1', 'ops', now)}"}
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"), case_id="C-1",
                                            purpose="risk_management", subjects=SUBJECTS)
    assert (await _submit(env, jwe)).status_code == 202

    found = (await env.http.get("/v1/audit/entries", params={"subject": "19 / 4471023k"}, headers=ig)).json()
    assert {e["kind"] for e in found["entries"]} >= {"submitted", "disclosed", "refused"}
    assert (await env.http.get("/v1/audit/entries", params={"subject": "someone-else"},
                               headers=ig)).json()["entries"] == []
    refused = (await env.http.get("/v1/audit/entries", params={"decision": "deny"}, headers=ig)).json()
    assert [e["recipient"] for e in refused["entries"]] == ["advocacy"]
    assert (await env.http.get("/v1/audit/entries", headers=ops)).status_code == 403
    agency = {"authorization": f"Bearer {wire.sign_agency_auth(env.keys['nhs'], now)}"}
    assert (await env.http.get("/v1/audit/entries", headers=agency)).status_code == 403
    checkpoint = await env.http.get("/v1/audit/checkpoint", headers=ig)
    assert checkpoint.text.startswith("masp.audit/test\n")

    answer = await env.http.post("/v1/dsa/explain", headers=ig, json={
        "from": "police", "to": "nhs", "masp_type": "case_referral", "purpose": "risk_management"})
    assert answer.status_code == 200
    assert answer.json()["withheld"]["victim_location"] == "P4.hard_rule"
    bad = await env.http.post("/v1/dsa/explain", headers=ig, json={"from": "police"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_http_mailbox_is_per_agency(env: Env) -> None:
    now = env.service.exchange.clock
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"), case_id="C-1",
                                            purpose="risk_management", subjects=SUBJECTS)
    mid = (await _submit(env, jwe)).json()["message_id"]

    def auth(agency: str) -> dict[str, str]:
        return {"authorization": f"Bearer {wire.sign_agency_auth(env.keys[agency], now())}"}

    nhs_box = (await env.http.get("/v1/mailbox", headers=auth("nhs"))).json()["deliveries"]
    assert [d["message_id"] for d in nhs_box] == [mid]
    delivery_id = nhs_box[0]["delivery_id"]
    assert (await env.http.get(f"/v1/mailbox/{delivery_id}", headers=auth("probation"))).status_code == 404
    assert (await env.http.get("/v1/mailbox", headers=auth("advocacy"))).json()["deliveries"] == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_search_about_a_person_is_itself_audited(env: Env) -> None:
    from broker.api.auth import issue_user_token

    ig = {"authorization": "Bearer " + issue_user_token(
        env.service.exchange.broker, "ig-2", "ig_officer", env.service.exchange.clock())}
    assert (await env.http.get("/v1/audit/entries", params={"subject": "19/4471023K"},
                               headers=ig)).json()["entries"] == []
    viewed = [e for e in await _entries(env) if e.kind == "audit_viewed"]
    assert len(viewed) == 1 and viewed[0].actor.user_id == "ig-2"
    leaf_text = viewed[0].model_dump_json()
    assert "4471023" not in leaf_text  # only the pseudonym is recorded
    again = (await env.http.get("/v1/audit/entries", params={"subject": "19/4471023K"},
                                headers=ig)).json()["entries"]
    assert [e["kind"] for e in again] == ["audit_viewed"]
