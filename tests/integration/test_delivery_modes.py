"""Per-agency delivery modes and JWS alg names, on the real RabbitMQ, SQLite and PostgreSQL.

advocacy is registered ``mailbox``: nothing may reach its inbox queue, where nobody reads,
and its HTTP acknowledgement settles the delivery. probation is registered ``EdDSA``: what
the broker signs for it must say so, and verify in PyJWT and jwcrypto, which know only that
name; the others keep ``Ed25519``.
"""

from __future__ import annotations

import json

import jwt as pyjwt
import pytest
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from adapters.runtime import wait_for
from broker import wire
from broker.crypto import jose
from broker.crypto.keys import public_jwk
from broker.demo.run import demo_body
from tests.integration.conftest import Env
from tests.integration.delivery_support import SUBJECTS, agency, deliveries, entries, refer


@pytest.fixture
def broker_options() -> dict[str, object]:
    return {"delivery_modes": {"advocacy": "mailbox"}, "jws_alg_names": {"probation": "EdDSA"}}


async def _depth(env: Env, agency_name: str) -> int:
    async with env.connection.channel() as ch:
        queue = await ch.declare_queue(env.service.names.inbox(agency_name), passive=True)
        return int(queue.declaration_result.message_count or 0)


async def test_a_mailbox_agency_gets_nothing_in_its_queue_and_its_http_ack_settles(env: Env) -> None:
    await env.adapters["advocacy"].stop()  # nobody consumes its queue: what lands there stays
    police = env.adapters["police"]
    consent = demo_body("consent_change")  # advocacy hears of a victim only with her consent (P6)
    for masp_type, body, purpose in (("consent_change", consent, "case_management"),
                                     ("case_referral", demo_body("case_referral"), "risk_management")):
        _, jwe = police.compose(masp_type, body, case_id="C-MBX-1", purpose=purpose, subjects=SUBJECTS,
                                consent_ref="CONSENT-MBX-1")
        answer = await police.submit_http(env.http, jwe)
        assert answer.status_code == 202, answer.text
    mid = answer.json()["message_id"]
    decided = {d["recipient"]: d["decision"] for d in answer.json()["decisions"]}
    assert decided["advocacy"].startswith("permit")
    rows = await deliveries(env, mid)
    assert {"probation", "advocacy"} <= set(rows)
    assert await wait_for_state(env, mid, "advocacy", "published")
    assert await _depth(env, "advocacy") == 0

    listed = (await env.http.get("/v1/mailbox", params={"state": "published"},
                                 headers=agency(env, "advocacy"))).json()["deliveries"]
    mine = [d for d in listed if d["message_id"] == mid]
    assert len(mine) == 1
    fetched = await env.http.get(f"/v1/mailbox/{mine[0]['delivery_id']}", headers=agency(env, "advocacy"))
    assert fetched.headers["content-type"].startswith("application/jose")
    delivery = wire.open_delivery(fetched.text, env.keys["advocacy"], env.registry)
    ack = wire.sign_ack(env.keys["advocacy"], delivery, env.service.exchange.clock())
    answer = await env.http.post(f"/v1/mailbox/{delivery.delivery_id}/ack", content=ack,
                                 headers=agency(env, "advocacy"))
    assert answer.status_code == 200 and answer.json() == {
        "delivery_id": delivery.delivery_id, "state": "acknowledged", "duplicate": False}
    assert (await deliveries(env, mid))["advocacy"].state == "acknowledged"
    assert await _depth(env, "advocacy") == 0
    acked = [e for e in await entries(env, "acknowledged") if e.delivery_id == delivery.delivery_id]
    assert len(acked) == 1 and acked[0].actor.auth == "http"


async def test_an_amqp_agency_acked_over_http_then_over_amqp_is_recorded_once(env: Env) -> None:
    """The mailbox is the fallback of an AMQP agency: its HTTP ack settles the delivery, and
    the copy still in its queue, when consumed and acknowledged again, is answered duplicate."""
    await env.adapters["probation"].stop()
    mid = await refer(env)
    assert await wait_for_state(env, mid, "probation", "published")
    row = (await deliveries(env, mid))["probation"]
    fetched = await env.http.get(f"/v1/mailbox/{row.delivery_id}", headers=agency(env, "probation"))
    delivery = wire.open_delivery(fetched.text, env.keys["probation"], env.registry)
    ack = wire.sign_ack(env.keys["probation"], delivery, env.service.exchange.clock())
    assert (await env.http.post(f"/v1/mailbox/{row.delivery_id}/ack", content=ack,
                                headers=agency(env, "probation"))).json()["duplicate"] is False
    assert await _depth(env, "probation") == 1  # RabbitMQ cannot take one message back out
    await env.adapters["probation"].start(env.amqp["probation"])
    assert await wait_for(lambda: bool(env.adapters["probation"].received()), timeout=30)
    assert await _drained(env, env.service.names.inbox("probation"), env.service.names.acks)
    acked = [e for e in await entries(env, "acknowledged") if e.delivery_id == row.delivery_id]
    assert len(acked) == 1, "the second acknowledgement of the AMQP copy is a duplicate, not an entry"


async def test_what_the_broker_signs_for_an_agency_uses_its_alg_name(env: Env) -> None:
    mid = await refer(env)
    assert await wait_for(lambda: all(env.adapters[a].received() for a in ("probation", "nhs")), timeout=30)
    broker_sig = env.registry.current("broker", "sig")
    probation_token = env.adapters["probation"].received()[0]["delivery"]
    raw = {a: env.adapters[a].home / "deliveries" / f"{env.adapters[a].received()[0]['delivery']['jti']}.jwe"
           for a in ("probation", "nhs")}
    tokens = {a: _delivery_token(env, a, p.read_text()) for a, p in raw.items()}
    assert jose.peek_header(tokens["probation"], 3)["alg"] == "EdDSA"
    assert jose.peek_header(tokens["nhs"], 3)["alg"] == "Ed25519"
    assert probation_token["message_id"] == mid

    # PyJWT knows EdDSA only; jwcrypto too: both verify the token made for probation
    jwk = public_jwk(broker_sig)
    key = pyjwt.PyJWK(jwk).key
    claims = pyjwt.decode(tokens["probation"], key, algorithms=["EdDSA"], audience="probation")
    assert claims["jti"] == probation_token["jti"]
    signed = jc_jws.JWS()
    signed.deserialize(tokens["probation"])
    signed.verify(jc_jwk.JWK(**jwk), alg="EdDSA")
    assert json.loads(signed.payload)["aud"] == "probation"
    with pytest.raises(pyjwt.InvalidAlgorithmError):  # and the Ed25519-named one they cannot read
        pyjwt.decode(tokens["nhs"], key, algorithms=["EdDSA"], audience="nhs")

    # receipts too: probation's says EdDSA, police's Ed25519
    for sender, alg in (("probation", "EdDSA"), ("police", "Ed25519")):
        _, jwe = env.adapters[sender].compose("case_referral", demo_body("case_referral"), case_id="C-ALG-1",
                                              purpose="risk_management", subjects=SUBJECTS)
        receipt = (await env.adapters[sender].submit_http(env.http, jwe)).json()["receipt"]
        assert jose.peek_header(receipt, 3)["alg"] == alg
        if alg == "EdDSA":
            assert pyjwt.decode(receipt, key, algorithms=["EdDSA"], audience=sender)["iss"] == "broker"


def _delivery_token(env: Env, agency_name: str, jwe: str) -> str:
    plain = jose.decrypt(jwe, env.keys[agency_name].decryption_keys(), wire.CTY_DELIVERY)
    return str(json.loads(plain)["delivery"])


async def _drained(env: Env, *queues: str, timeout: float = 30) -> bool:
    """Every queue empty and unacknowledged-free: what was in them has been consumed and settled."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with env.connection.channel() as ch:
            depths = [(await ch.declare_queue(q, passive=True)).declaration_result.message_count
                      for q in queues]
        if not any(depths):
            await asyncio.sleep(0.3)  # the consumer's own ack of the last message, and its commit
            return True
        await asyncio.sleep(0.1)
    return False


async def wait_for_state(env: Env, mid: str, recipient: str, state: str, timeout: float = 30) -> bool:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        row = (await deliveries(env, mid)).get(recipient)
        if row is not None and row.state == state:
            return True
        await asyncio.sleep(0.1)
    return False
