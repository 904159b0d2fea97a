"""A hostile partner against masp-wire/2: acknowledgements with odd times, key discovery,
received schemas, strict bodies, JOSE headers, namespaces and mailbox-mode delivery.

The attacker holds one agency's keys (probation, unless a test says otherwise) and nothing
else. Every outcome is checked from outside: the response and its problem document, the
audit log, the delivery rows and, on the real RabbitMQ, queue depths. A refusal must change
nothing and repeat nothing the attacker wrote (``tag`` makes it findable wherever it lands).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jsonschema
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from broker import wire
from broker.crypto import jose
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys, KeyRegistry, generate_key, public_jwk
from broker.demo.run import demo_body
from broker.errors import ConfigurationError
from broker.service import init_state
from broker.store.models import DeliveryRow
from broker.transport.topology import normalise_namespace
from schemas import MESSAGE_TYPES, NEVER_TO_NHS, data_classes
from schemas.export import json_schemas
from tests.integration import conftest as integration
from tests.integration.conftest import Env
from tests.integration.delivery_support import SUBJECTS, agency, deliveries, entries, eventually
from tests.security import jose_forge as forge
from tests.security.conftest import Api, api_settings, open_api

# the integration suite's whole broker, for the mailbox-mode tests at the end
amqp_url = integration.amqp_url
broker_clock = integration.broker_clock
database_url = integration.database_url
env = integration.env
agency_users = integration.agency_users

HOSTILE = "probation"
in_process = pytest.mark.asyncio(loop_scope="module")


def tag() -> str:
    return "zq" + secrets.token_hex(6)


@pytest_asyncio.fixture(loop_scope="module")
async def api(shared_api: Api) -> Api:
    await shared_api.service.exchange.refusals.flush(everything=True)
    return shared_api


@pytest.fixture
def broker_options() -> dict[str, object]:
    return {"delivery_modes": {"advocacy": "mailbox"}}


# --- helpers ---------------------------------------------------------------------------


def _private(keys: AgencyKeys) -> Ed25519PrivateKey:
    key = keys.sig.private_key
    assert isinstance(key, Ed25519PrivateKey)
    return key


def forge_ack(keys: AgencyKeys, claims: dict[str, Any], header: dict[str, Any] | None = None,
              raw_header: bytes | None = None) -> str:
    """An ack JWS signed with ``keys`` whose header and claims are exactly what is asked."""
    hdr = header if header is not None else {"alg": "Ed25519", "kid": str(keys.sig.kid),
                                              "typ": wire.TYP_ACK}
    return forge.forge_jws(claims, forge.ed25519_signer(_private(keys)), header=hdr,
                           raw_header=raw_header)


def ack_claims(api: Api, row: DeliveryRow, **changes: Any) -> dict[str, Any]:
    now = int(api.service.exchange.clock().timestamp())
    claims: dict[str, Any] = {"iss": row.recipient, "aud": BROKER, "delivery_id": row.delivery_id,
                              "message_id": row.message_id, "status": "accepted", "iat": now,
                              "exp": now + 3600, "jti": wire.new_id()}
    for name, value in changes.items():
        if value is _DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


_DROP = object()


async def rows(api: Api) -> list[DeliveryRow]:
    async with api.service.exchange.sessions() as s:
        return list((await s.execute(select(DeliveryRow))).scalars().all())


async def state(api: Api) -> tuple[int, list[tuple[str, str, str, bool]]]:
    """The audit head and every delivery's (id, recipient, state, ciphertext kept)."""
    found = sorted((r.delivery_id, r.recipient, r.state, r.jwe is not None) for r in await rows(api))
    return await api.head(), found


async def fresh_delivery(api: Api, recipient: str = HOSTILE) -> DeliveryRow:
    """A police referral's delivery to ``recipient`` (queued: no relay runs in process)."""
    mid, jwe = api.referral("police")
    assert (await api.post_message(jwe)).status_code == 202
    mine = [r for r in await rows(api) if r.message_id == mid and r.recipient == recipient]
    assert len(mine) == 1
    return mine[0]


async def post_ack(api: Api, delivery_id: str, token: str, caller: str = HOSTILE) -> httpx.Response:
    return await api.http.post(f"/v1/mailbox/{delivery_id}/ack", content=token.encode("ascii"),
                               headers=api.agency(caller))


def audit_text(api: Api, found: list[Any]) -> str:
    return "\n".join(e.model_dump_json() for e in found)


# --- 1. acknowledgement times and identifiers --------------------------------------------

HUGE = 10**30
TIME_ATTACKS: dict[str, tuple[dict[str, Any], str]] = {
    "exp-25h-ahead": ({"exp": "+90000"}, "expired"),
    "iat-negative": ({"iat": -1}, "expired"),
    "iat-far-negative": ({"iat": -(2**62)}, "malformed"),
    "exp-huge": ({"exp": HUGE}, "malformed"),
    "iat-huge": ({"iat": HUGE}, "malformed"),
    "iat-bool": ({"iat": True}, "malformed"),
    "exp-bool": ({"exp": True}, "malformed"),
    "iat-float": ({"iat": "float"}, "malformed"),
    "exp-float": ({"exp": "float+3600"}, "malformed"),
    "exp-string": ({"exp": "1795341600"}, "malformed"),
    "iat-missing": ({"iat": _DROP}, "malformed"),
    "exp-missing": ({"exp": _DROP}, "malformed"),
    "jti-missing": ({"jti": _DROP}, "malformed"),
    "jti-64KiB": ({"jti": "J" * 65536}, "malformed"),
    "jti-65": ({"jti": "J" * 65}, "malformed"),
    "jti-empty": ({"jti": ""}, "malformed"),
    "jti-int": ({"jti": 7}, "malformed"),
    "jti-null": ({"jti": None}, "malformed"),
    "iat-6-min-ahead": ({"iat": "+360", "exp": "+3600"}, "expired"),
    "exp-now": ({"exp": "+0"}, "expired"),
    "delivery-id-64KiB": ({"delivery_id": "D" * 65536}, "malformed"),
    "status-other": ({"status": "ACCEPTED"}, "malformed"),
}


def _resolve(api: Api, changes: dict[str, Any]) -> dict[str, Any]:
    now = int(api.service.exchange.clock().timestamp())
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if value == "float":
            out[name] = float(now)
        elif value == "float+3600":
            out[name] = float(now + 3600)
        elif isinstance(value, str) and value.startswith("+"):
            out[name] = now + int(value[1:])
        else:
            out[name] = value
    return out


@in_process
@pytest.mark.parametrize("name", sorted(TIME_ATTACKS))
async def test_an_ack_with_odd_times_or_ids_is_refused_and_changes_nothing(api: Api, name: str) -> None:
    changes, code = TIME_ATTACKS[name]
    row = await fresh_delivery(api)
    marker = tag()
    claims = ack_claims(api, row, reason=marker, **_resolve(api, changes))
    before = await state(api)
    resp = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], claims))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == code, resp.text
    assert marker not in resp.text and "JJJJ" not in resp.text and "DDDD" not in resp.text
    assert await state(api) == before
    # the honest ack still settles it: the refusal left the delivery as it was
    good = await post_ack(api, row.delivery_id, wire.sign_ack(api.keys[HOSTILE], {
        "delivery_id": row.delivery_id, "message_id": row.message_id}, api.service.exchange.clock()))
    assert good.status_code == 200 and good.json()["duplicate"] is False


@in_process
async def test_an_ack_at_the_edges_of_its_window_is_accepted(api: Api) -> None:
    row = await fresh_delivery(api)
    now = int(api.service.exchange.clock().timestamp())
    # iat 4 minutes ahead (inside the skew), lifetime exactly 24 h, jti of exactly 64 characters
    claims = ack_claims(api, row, iat=now + 240, exp=now + 240 + 86400, jti="j" * 64)
    resp = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], claims))
    assert resp.status_code == 200, resp.text


@in_process
async def test_acks_are_idempotent_per_delivery_and_the_other_status_is_409(api: Api) -> None:
    row = await fresh_delivery(api)
    head = await api.head()
    first = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], ack_claims(api, row)))
    assert first.json() == {"delivery_id": row.delivery_id, "state": "acknowledged", "duplicate": False}
    for _ in range(3):  # new jti each time, and the very same token again
        again = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], ack_claims(api, row)))
        assert again.status_code == 200 and again.json()["duplicate"] is True
    settled = await state(api)
    marker = tag()
    other = await post_ack(api, row.delivery_id, forge_ack(
        api.keys[HOSTILE], ack_claims(api, row, status="rejected", reason=marker)))
    assert other.status_code == 409 and other.json()["code"] == "conflict"
    assert marker not in other.text
    assert await state(api) == settled
    written = [e for e in await api.entries(after=head) if e.delivery_id == row.delivery_id]
    assert [e.kind for e in written] == ["acknowledged"]


@in_process
async def test_an_ack_for_another_agencys_delivery_is_404_and_changes_nothing(api: Api) -> None:
    mid, jwe = api.referral("police")
    assert (await api.post_message(jwe)).status_code == 202
    theirs = [r for r in await rows(api) if r.message_id == mid and r.recipient != HOSTILE]
    assert theirs, "the referral reaches someone besides the attacker"
    victim_row = theirs[0]
    before = await state(api)
    mine = ack_claims(api, victim_row, iss=HOSTILE)  # signed by the attacker, naming theirs
    token = forge_ack(api.keys[HOSTILE], mine)
    resp = await post_ack(api, victim_row.delivery_id, token)
    assert resp.status_code == 404 and resp.json()["code"] == "not-found"
    # claiming to be the recipient with the attacker's own key
    posing = forge_ack(api.keys[HOSTILE], ack_claims(api, victim_row))
    resp = await post_ack(api, victim_row.delivery_id, posing)
    assert resp.status_code == 401, resp.text
    # the recipient's kid on a token the attacker signed
    kid = str(api.keys[victim_row.recipient].sig.kid)
    forged = forge_ack(api.keys[HOSTILE], ack_claims(api, victim_row),
                       header={"alg": "Ed25519", "kid": kid, "typ": wire.TYP_ACK})
    resp = await post_ack(api, victim_row.delivery_id, forged, caller=HOSTILE)
    assert resp.status_code in (401, 403), resp.text
    # nor may it read the delivery
    peek = await api.http.get(f"/v1/mailbox/{victim_row.delivery_id}", headers=api.agency(HOSTILE))
    assert peek.status_code == 404
    assert await state(api) == before


# --- 2. JOSE header parameters outside the profile ---------------------------------------


def _header(api: Api, **extra: Any) -> dict[str, Any]:
    return {"alg": "Ed25519", "kid": str(api.keys[HOSTILE].sig.kid), "typ": wire.TYP_ACK, **extra}


@in_process
async def test_ack_headers_outside_the_profile_are_malformed_before_any_key(api: Api) -> None:
    row = await fresh_delivery(api)
    marker = tag()
    kid = str(api.keys[HOSTILE].sig.kid)
    raw_dup = (f'{{"alg":"none","alg":"Ed25519","kid":"{kid}","typ":"{wire.TYP_ACK}"}}').encode()
    cases: dict[str, tuple[dict[str, Any] | None, bytes | None]] = {
        "crit-empty": (_header(api, crit=[]), None),
        "b64-false": (_header(api, b64=False), None),
        "b64-string": (_header(api, b64="true"), None),
        "b64-one": (_header(api, b64=1), None),
        "cty-object": (_header(api, cty={"x": marker}), None),
        "cty-null": (_header(api, cty=None), None),
        "unknown-named-like-a-victim": (_header(api, **{f"Jane Smith {marker}": 1}), None),
        "zip": (_header(api, zip="DEF"), None),
        "jwk-embedded": (_header(api, jwk=public_jwk(api.keys[HOSTILE].sig)), None),
        "duplicated-alg": (None, raw_dup),
    }
    before = await state(api)
    claims = ack_claims(api, row)
    got = {}
    for name, (header, raw) in cases.items():
        resp = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], claims, header, raw))
        got[name] = (resp.status_code, resp.json().get("code"))
        assert marker not in resp.text and "Jane" not in resp.text, name
    assert await state(api) == before
    wrong = {n: g for n, g in got.items() if g != (400, "malformed")}
    assert not wrong, wrong
    # the same ack with the ignored parameters (cty string, b64 true) and the EdDSA name is fine
    ok = await post_ack(api, row.delivery_id, forge_ack(
        api.keys[HOSTILE], claims, _header(api, alg="EdDSA", cty="x", b64=True)))
    assert ok.status_code == 200, ok.text


@in_process
async def test_an_ack_header_outside_the_profile_is_malformed_whatever_its_kid(api: Api) -> None:
    row = await fresh_delivery(api)
    marker = tag()
    before = await state(api)
    header = {"alg": "Ed25519", "kid": f"x{marker}", "typ": wire.TYP_ACK, "nonce": marker}
    resp = await post_ack(api, row.delivery_id, forge_ack(api.keys[HOSTILE], ack_claims(api, row), header))
    assert marker not in resp.text
    assert await state(api) == before
    assert (resp.status_code, resp.json()["code"]) == (400, "malformed")


@in_process
async def test_message_headers_outside_the_profile_are_audited_without_the_senders_words(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tag()
    _, jwe = api.referral("police")
    raw = wire.decrypt_submission(jwe, {str(api.keys[BROKER].enc.kid): api.keys[BROKER].enc}, 1 << 20)
    jwt, _, disclosures = raw.partition("~")
    payload = json.loads(jose.b64url_decode(jwt.split(".")[1]))
    kid = str(api.keys["police"].sig.kid)
    for extra in ({"cty": {"n": marker}}, {"b64": False}, {f"victim {marker}": True}, {"crit": []}):
        head = await api.head()
        header = {"alg": "Ed25519", "kid": kid, "typ": "masp+sd-jwt", **extra}
        signed = forge.forge_jws(payload, forge.ed25519_signer(_private(api.keys["police"])), header=header)
        sealed = jose.encrypt((signed + "~" + disclosures).encode("ascii"), api.keys[BROKER].enc,
                                   wire.CTY_SUBMISSION)
        before = await api.deliveries()
        resp = await api.post_message(sealed)
        assert resp.status_code == 400 and resp.json()["code"] == "malformed", resp.text
        assert marker not in resp.text
        assert await api.deliveries() == before
        assert marker not in audit_text(api, await api.entries(after=head))
        await api.service.exchange.refusals.flush(everything=True)
    assert marker not in capsys.readouterr().out


# --- 3. key discovery ---------------------------------------------------------------------


@in_process
async def test_jwks_holds_the_brokers_keys_only_and_agency_keys_name_their_owner(api: Api) -> None:
    broker = (await api.http.get("/.well-known/jwks.json")).json()["keys"]
    agencies = (await api.http.get("/v1/agency-keys")).json()["keys"]
    assert broker and all(k["kid"].startswith("broker-") and k["masp_agency"] == BROKER for k in broker)
    assert agencies and all(k["masp_agency"] != BROKER and k["kid"].startswith(k["masp_agency"] + "-")
                            for k in agencies)
    assert all("d" not in k for k in broker + agencies)


@pytest.fixture
async def planted(tmp_path: Path) -> AsyncIterator[tuple[Api | None, str, BaseException | None]]:
    """A broker whose key directory holds, in police's folder, a public key whose kid says
    it is the broker's (the private half is police's): refused at start, or kept out of
    what the broker publishes and trusts as its own."""
    settings = api_settings(tmp_path)
    init_state(settings, datetime.now(UTC).date())
    evil = generate_key(BROKER, "sig", datetime(2099, 1, 1, tzinfo=UTC).date())
    kid = str(evil.kid)
    (settings.keys_dir / "police" / "extra.public.jwk").write_text(json.dumps(public_jwk(evil)))
    try:
        service, app, http = await open_api(settings)
    except ConfigurationError as exc:
        yield None, kid, exc
        return
    keys = {a: AgencyKeys.load(settings.keys_dir, a) for a in (*AGENCIES, BROKER)}
    try:
        yield Api(settings, service, http, keys, app), kid, None
    finally:
        await http.aclose()
        await service.close()


async def test_a_key_in_an_agencys_folder_never_becomes_a_broker_key(
        planted: tuple[Api | None, str, BaseException | None]) -> None:
    api, kid, refused = planted
    if api is None:
        assert isinstance(refused, ConfigurationError)
        return
    published = (await api.http.get("/.well-known/jwks.json")).json()["keys"]
    assert kid not in {k["kid"] for k in published}
    # nor may a recipient's registry take it for the broker's signing key
    registry = KeyRegistry.from_public_dir(api.settings.keys_dir)
    assert str(registry.current(BROKER, "sig").kid) != kid


# --- 4. what an agency may receive -------------------------------------------------------


def _data_classes_in(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "x-masp-data-class" and isinstance(v, str):
                found.add(v)
            found |= _data_classes_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= _data_classes_in(v)
    return found


def _refs(value: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "$ref" and isinstance(v, str):
                out.add(v.rsplit("/", 1)[-1])
            out |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= _refs(v)
    return out


def _reachable_defs(schema: dict[str, Any]) -> set[str]:
    defs = schema.get("$defs", {})
    seen: set[str] = set()
    todo = _refs(schema.get("properties", {}))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= _refs(defs.get(name, {}))
    return seen


@in_process
async def test_nhs_is_never_shown_a_victim_location_or_safety_plan_field(api: Api) -> None:
    never = {c.value for c in NEVER_TO_NHS}
    for masp_type in MESSAGE_TYPES:
        resp = await api.http.get(f"/v1/schemas/{masp_type}", headers=api.agency("nhs"))
        assert resp.status_code == 200, resp.text
        schema = resp.json()
        classes = data_classes(masp_type)
        assert not {classes[f] for f in schema["properties"]} & NEVER_TO_NHS, masp_type
        assert not _data_classes_in(schema) & never, masp_type
        assert schema["x-masp-recipient"] == "nhs" and "required" not in schema


@in_process
async def test_a_served_schema_defines_nothing_its_properties_do_not_use(api: Api) -> None:
    for masp_type in MESSAGE_TYPES:
        schema = (await api.http.get(f"/v1/schemas/{masp_type}", headers=api.agency("nhs"))).json()
        unused = set(schema.get("$defs", {})) - _reachable_defs(schema)
        assert not unused, (masp_type, sorted(unused))


@in_process
async def test_odd_schema_names_are_404_and_never_repeated_in_the_detail(api: Api) -> None:
    marker = tag()
    odd = ["..%2f..", "%2e%2e", "..%2fcase_referral", "case_referral%00", "case_referral%0a",
           "c%D0%B0se_referral",  # Cyrillic a
           "CASE_REFERRAL", "case_referral.v1.schema.json", "__class__", "__proto__",
           marker + "x" * 6000, f"Jane%20Smith%20{marker}"]
    for name in odd:
        resp = await api.http.get(f"/v1/schemas/{name}", headers=api.agency(HOSTILE))
        assert resp.status_code == 404, (name, resp.text[:200])
        problem = resp.json()
        assert marker not in problem["detail"] and "Jane" not in problem["detail"]
        assert "xxxxxxxx" not in problem["detail"]
    nobody = await api.http.get("/v1/schemas/case_referral")
    assert nobody.status_code == 401
    person = await api.http.get("/v1/schemas/case_referral", headers=api.person("ig_officer"))
    assert person.status_code == 403


# --- 5. strict bodies, hints and purposes ----------------------------------------------


async def _submit_body(api: Api, body: dict[str, Any], purpose: str = "risk_management",
                       masp_type: str = "case_referral") -> httpx.Response:
    message = wire.compose_message(api.keys["police"], masp_type, body, case_id="C-1", purpose=purpose,
                                   subjects=SUBJECTS, now=api.service.exchange.clock())
    return await api.post_message(wire.seal_submission(message, api.keys[BROKER].enc))


def _referral(**changes: Any) -> dict[str, Any]:
    body = demo_body("case_referral")
    for path, value in changes.items():
        target = body
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return body


@in_process
async def test_the_broker_refuses_what_the_published_schema_refuses(api: Api) -> None:
    """The recipient receives the disclosures as sent; it validates them against the schema
    the broker publishes. A value the broker normalises before checking passes the broker
    and then fails at every recipient: it must be refused at ingress instead."""
    full = json_schemas()["case_referral.v1.schema.json"]
    cases = {
        "crime reference with a trailing space": _referral(crime_reference="44/2026/118734 "),
        "postcode in lower case with spaces": _referral(perpetrator_address__postcode="so50   9zz"),
        "summary over its maxLength by spaces": _referral(behaviour_summary="x" * 8000 + " " * 20),
        "offence code in lower case": _referral(offence_codes=["ph97003"]),
    }
    accepted = []
    for name, body in cases.items():
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(body, full)  # what every recipient's check says
        if (await _submit_body(api, body)).status_code == 202:
            accepted.append(name)
    assert not accepted


@in_process
async def test_unknown_fields_hints_and_declarations_never_echo_the_sender(
        api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tag()
    head = await api.head()
    cases: dict[str, dict[str, Any]] = {
        "victim-name-as-field": {**demo_body("case_referral"), f"Jane_Smith_{marker}": "x"},
        "zero-width-lookalike": {**demo_body("case_referral"), "victim_address\u200b": {"n": marker}},
        "typo-of-known-field": {**demo_body("case_referral"), f"perpetrator_nam{marker[:2]}": marker},
        "newline-name": {**demo_body("case_referral"), f"x\n{marker}": 1},
    }
    for name, body in cases.items():
        before = await api.deliveries()
        resp = await _submit_body(api, body)
        assert resp.status_code == 422, (name, resp.text)
        text = resp.text
        assert marker not in text and "Jane" not in text and "\\u200b" not in text, (name, text)
        assert await api.deliveries() == before
    hinted = await _submit_body(api, {**demo_body("case_referral"), "victim_adress": {"n": 1}})
    assert "did you mean victim_address" in hinted.json()["detail"]
    assert "victim_adress" not in hinted.text
    # JsonTrue: 1 and 1.0 merely equal true
    for value in (1, 1.0, "true"):
        body = {**demo_body("intervention_referral"), "confidentiality_limits_acknowledged": value}
        resp = await _submit_body(api, body, purpose="intervention", masp_type="intervention_referral")
        assert resp.status_code == 422, (value, resp.text)
    # a contact window mixing a local time and one with an offset: refused, not a crash
    window = {"days": ["mon"], "start": "12:00:00", "end": "13:00:00+01:00", "methods": ["phone_call"]}
    resp = await _submit_body(api, _referral(victim_safe_contact_times=[window]))
    assert resp.status_code == 422 and resp.json()["code"] == "schema-invalid", resp.text
    assert marker not in audit_text(api, await api.entries(after=head))
    assert marker not in capsys.readouterr().out


@in_process
async def test_look_alike_purposes_are_refused_without_repeating_them(api: Api) -> None:
    head = await api.head()
    marker = tag()
    odd = ["risk_manag\u0435ment",  # Cyrillic e
           "risk_management\n", "risk_management ", "RISK_MANAGEMENT", "risk_management\u200b",
           f"risk_management\n{marker}", f"jane_smith_{marker}", "risk-management"]
    for purpose in odd:
        before = await api.deliveries()
        resp = await _submit_body(api, demo_body("case_referral"), purpose=purpose)
        assert resp.status_code in (400, 422), (purpose, resp.text)
        assert resp.json()["code"] in ("malformed", "purpose-not-agreed"), resp.text
        assert purpose.strip() not in resp.text or purpose.strip() == "risk_management"
        assert marker not in resp.text and "\u0435" not in resp.json()["detail"]
        assert await api.deliveries() == before
        await api.service.exchange.refusals.flush(everything=True)
    assert marker not in audit_text(api, await api.entries(after=head))


# --- 6. namespaces -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a.b", "..", "a..", ".a", " ", "a b", "ns\n", "\uff41bc", "\u0663",
                                   "a" * 64, "-a", "_a", "a/b", "a*", "a#", "é"])
def test_odd_namespaces_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError):
        normalise_namespace(value)


@pytest.mark.parametrize(("value", "expected"), [("", ""), ("demo1", "demo1."), ("demo1.", "demo1."),
                                                 ("A-1_b", "A-1_b."), ("a" * 63, "a" * 63 + ".")])
def test_namespaces_end_in_one_dot(value: str, expected: str) -> None:
    assert normalise_namespace(value) == expected


def test_a_lone_dot_is_not_a_namespace() -> None:
    with pytest.raises(ConfigurationError):
        normalise_namespace(".")


# --- 7. mailbox mode on the real RabbitMQ --------------------------------------------------


async def _depth(env: Env, recipient: str) -> int:
    async with env.connection.channel() as ch:
        queue = await ch.declare_queue(env.service.names.inbox(recipient), passive=True)
        return int(queue.declaration_result.message_count or 0)


async def _submit_to_advocacy(env: Env) -> str:
    police = env.adapters["police"]
    consent = demo_body("consent_change")
    answer = None
    for masp_type, body, purpose in (("consent_change", consent, "case_management"),
                                     ("case_referral", demo_body("case_referral"), "risk_management")):
        _, jwe = police.compose(masp_type, body, case_id="C-HST-1", purpose=purpose, subjects=SUBJECTS,
                                consent_ref="CONSENT-HST-1")
        answer = await police.submit_http(env.http, jwe)
        assert answer.status_code == 202, answer.text
    assert answer is not None
    return str(answer.json()["message_id"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_mailbox_acks_racing_the_relay_settle_once_and_nothing_reaches_the_queue(env: Env) -> None:
    await env.adapters["advocacy"].stop()
    await env.adapters["probation"].stop()
    mid = await _submit_to_advocacy(env)
    row = (await deliveries(env, mid))["advocacy"]
    keys = env.keys["advocacy"]
    ids = {"delivery_id": row.delivery_id, "message_id": mid}
    # as soon as it is decided, while the relay may be taking it: many acks at once
    answers = await asyncio.gather(*(
        env.http.post(f"/v1/mailbox/{row.delivery_id}/ack",
                      content=wire.sign_ack(keys, ids, env.service.exchange.clock()),
                      headers=agency(env, "advocacy")) for _ in range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert [a.json()["duplicate"] for a in answers].count(False) == 1

    # the hostile partner (probation) over AMQP, on a second message: a rejection of advocacy's
    # delivery signed as itself, then its own honest ack as a sentinel that both were read
    second = await _submit_to_advocacy(env)
    target = (await deliveries(env, second))["advocacy"]
    hostile = env.keys[HOSTILE]
    own = (await deliveries(env, second))[HOSTILE]
    forged = wire.sign_ack(hostile, {"delivery_id": target.delivery_id, "message_id": second},
                           env.service.exchange.clock(), status="rejected")
    sentinel = wire.sign_ack(hostile, {"delivery_id": own.delivery_id, "message_id": second},
                             env.service.exchange.clock())
    async with env.connection.channel() as ch:
        acks = await ch.get_exchange(env.service.names.acks)
        for token in (forged, sentinel):
            await acks.publish(aio_pika.Message(token.encode("ascii"), content_type="application/jose",
                                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                               routing_key="")

    async def sentinel_recorded() -> bool:
        return (await deliveries(env, second))[HOSTILE].state == "acknowledged"

    assert await eventually(sentinel_recorded, timeout=20)
    assert (await deliveries(env, second))["advocacy"].state in ("queued", "published")
    assert not [e for e in await entries(env) if e.delivery_id == target.delivery_id]

    settled = (await deliveries(env, mid))["advocacy"]
    assert settled.state == "acknowledged" and settled.jwe is None
    acked = [e for e in await entries(env) if e.delivery_id == row.delivery_id]
    assert [e.kind for e in acked] == ["acknowledged"]
    assert await _depth(env, "advocacy") == 0
    late = await env.http.post(f"/v1/mailbox/{row.delivery_id}/ack",
                               content=wire.sign_ack(keys, ids, env.service.exchange.clock(),
                                                     status="rejected"),
                               headers=agency(env, "advocacy"))
    assert late.status_code == 409
