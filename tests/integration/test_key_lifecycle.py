"""Key rotation with messages in flight (real RabbitMQ) loses none; revocation is immediate, audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from adapters.runtime import AdapterRuntime, wait_for
from broker.cli import app
from broker.crypto import jose
from broker.crypto.keys import BROKER, AgencyKeys
from broker.crypto.lifecycle import KeyState, read_states, write_states
from broker.demo.run import demo_body
from broker.store.audit_export import verify_database
from tests.integration.conftest import Env
from tests.integration.delivery_support import SUBJECTS, entries

IN_FLIGHT = 6
AFTER = 3


def _masp(env: Env, *args: str) -> tuple[int, str, str]:
    s = env.settings
    result = CliRunner().invoke(app, list(args), env={
        "MASP_STATE_DIR": str(s.state_dir), "MASP_DATABASE_URL": s.db_url, "MASP_DSA_DIR": str(s.dsa_dir),
        "MASP_DEPLOYMENT": s.deployment, "MASP_AMQP_URL": s.amqp_url})
    return result.exit_code, result.stdout, result.stderr


def _received_ids(rt: AdapterRuntime) -> list[str]:
    return [r["message"]["jti"] for r in rt.received()]


async def test_rotation_with_messages_in_flight_loses_none(env: Env) -> None:
    police, probation = env.adapters["police"], env.adapters["probation"]
    old_probation_enc = str(probation.keys.enc.kid)
    # probation is offline: deliveries to it wait in its inbox, sealed to its current (soon old) key
    await probation.stop()
    sealed = [police.compose("case_referral", demo_body("case_referral"), case_id=f"C-ROT-{i}",
                             purpose="risk_management", subjects=SUBJECTS)[1] for i in range(IN_FLIGHT)]
    # submissions signed with police's old key race the rotation of both agencies' keys
    submitting = [asyncio.create_task(police.submit_amqp(env.amqp["police"], jwe)) for jwe in sealed]
    rotations = await asyncio.to_thread(lambda: [_masp(env, "keys", "rotate", agency, "--overlap", "1",
                                                       "--by", "op-7") for agency in ("police", "probation")])
    assert all(code == 0 for code, _, _ in rotations), rotations
    replies = await asyncio.gather(*submitting)
    assert all("message_id" in r for r in replies), replies
    first_ids = {str(r["message_id"]) for r in replies}
    assert len(first_ids) == IN_FLIGHT

    # police restarts with its new keys and sends more; probation restarts with its new keys
    new_police = AgencyKeys.load(env.settings.keys_dir, "police")
    new_probation = AgencyKeys.load(env.settings.keys_dir, "probation")
    assert new_police.sig.kid != police.keys.sig.kid and new_probation.enc.kid != old_probation_enc
    police2 = AdapterRuntime(new_police, env.registry, police.home, names=env.service.names)
    later = []
    for i in range(AFTER):
        _, jwe = police2.compose("case_referral", demo_body("case_referral"), case_id=f"C-NEW-{i}",
                                 purpose="risk_management", subjects=SUBJECTS)
        resp = await police2.submit_http(env.http, jwe)
        assert resp.status_code == 202, resp.text
        later.append(str(resp.json()["message_id"]))
    probation2 = AdapterRuntime(new_probation, env.registry, probation.home, names=env.service.names)
    env.adapters["probation"] = probation2
    await probation2.start(env.connection)

    wanted = first_ids | set(later)
    assert await wait_for(lambda: wanted <= set(_received_ids(probation2)), timeout=60)
    got = _received_ids(probation2)
    assert sorted(got) == sorted(wanted), "every message exactly once"
    kids = {jose.peek_header((probation2.home / "deliveries" / f"{r['delivery']['jti']}.jwe").read_text(), 5)
            ["kid"] for r in probation2.received()}
    assert kids == {old_probation_enc, str(new_probation.enc.kid)}  # both keys were in use, both opened

    rotated = await entries(env, "key_rotated")
    assert {e.sender for e in rotated} == {"police", "probation"}
    assert all(e.actor.user_id == "op-7" and e.reason and "->" in e.reason for e in rotated)

    # JWKS: new keys active, replaced ones retiring with an expiry; once the overlap ends, refused
    published = {k["kid"]: k for k in (await env.http.get("/v1/agency-keys")).json()["keys"]}
    old_sig = str(police.keys.sig.kid)
    assert published[str(new_police.sig.kid)]["status"] == "active"
    assert published[old_sig]["status"] == "retiring" and int(published[old_sig]["exp"]) > 0
    states = read_states(env.settings.keys_dir)
    states[old_sig] = KeyState("retiring", until=datetime.now(UTC) - timedelta(seconds=1))
    write_states(env.settings.keys_dir, states)
    _, stale = police.compose("case_referral", demo_body("case_referral"), case_id="C-OLD-1",
                              purpose="risk_management", subjects=SUBJECTS)
    refused = await police.submit_amqp(env.amqp["police"], stale)
    assert refused["type"].endswith("key-revoked") and f"key {old_sig} was retired" in refused["detail"]


async def test_revoked_key_refused_at_once_and_audited(env: Env) -> None:
    police = env.adapters["police"]
    kid = str(police.keys.sig.kid)
    _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-REV-1",
                            purpose="risk_management", subjects=SUBJECTS)
    code, out, err = await asyncio.to_thread(_masp, env, "keys", "revoke", kid, "--by", "op-9")
    assert code == 0, err
    assert out.strip() == f"{kid} revoked" and "masp keys rotate police" in err

    # at once: no restart, no reload; over HTTP the agency's own credentials are refused first
    http = await police.submit_http(env.http, jwe)
    assert http.status_code == 401 and http.headers["content-type"].startswith("application/problem+json")
    assert f"key {kid} was revoked" in http.json()["detail"]
    amqp = await police.submit_amqp(env.amqp["police"], jwe)
    assert amqp["type"].endswith("key-revoked") and f"key {kid} was revoked" in amqp["detail"], amqp

    revoked = await entries(env, "key_revoked")
    assert len(revoked) == 1
    assert revoked[0].sender == "police" and revoked[0].reason == f"{kid} revoked: compromised"
    assert revoked[0].actor.user_id == "op-9"
    published = {k["kid"]: k["status"] for k in (await env.http.get("/v1/agency-keys")).json()["keys"]}
    assert published[kid] == "revoked"

    code, _, err = await asyncio.to_thread(_masp, env, "keys", "revoke", "police-sig-19990101")
    assert code == 2 and err.startswith("masp: Key not registered") and err.count("\n") == 1


async def test_the_brokers_own_keys_rotate_like_an_agencys(env: Env) -> None:
    """The broker's JOSE keys are no longer the audit log's: they rotate with messages flowing,
    and the log (signed by its own key) still verifies."""
    police, nhs = env.adapters["police"], env.adapters["nhs"]
    old = AgencyKeys.load(env.settings.keys_dir, BROKER)
    code, _, err = await asyncio.to_thread(_masp, env, "keys", "rotate", "broker", "--overlap", "1",
                                           "--by", "op-7")
    assert code == 0, err
    assert "restart every broker process" in err
    new = AgencyKeys.load(env.settings.keys_dir, BROKER)
    assert new.sig.kid != old.sig.kid and new.enc.kid != old.enc.kid
    assert env.registry.current(BROKER, "enc").kid == new.enc.kid  # adapters seal to the new key

    _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-BRK-1",
                            purpose="risk_management", subjects=SUBJECTS)
    assert jose.peek_header(jwe, 5)["kid"] == str(new.enc.kid)
    resp = await police.submit_http(env.http, jwe)
    assert resp.status_code == 202, resp.text  # the running broker opens it with the new key
    message_id = str(resp.json()["message_id"])
    assert await wait_for(lambda: message_id in _received_ids(nhs), timeout=30)
    rotated = [e for e in await entries(env, "key_rotated") if e.sender == BROKER]
    assert len(rotated) == 1 and rotated[0].actor.user_id == "op-7"
    report = await verify_database(env.service)
    assert report.ok, report.problem
