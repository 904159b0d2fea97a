"""The wire formats of docs/spec/: every check a recipient or the broker must make, tripped."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from broker import wire
from broker.crypto import jose, sdjwt
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.errors import (
    DecryptionFailed,
    DisclosureMismatch,
    MalformedMessage,
    MessageExpired,
    SignatureInvalid,
    UnknownSender,
)
from tests.conftest import NOW

BODY = {"perpetrator_name": {"given": "Daniel", "family": "Marsh"},
        "victim_address": {"line1": "14 Fernhill Road", "postcode": "SO99 1ZZ"},
        "offence_codes": ["PHA-S2A"]}


def _message(keys: dict[str, AgencyKeys], **kw: object) -> sdjwt.SdJwt:
    args: dict[str, object] = {"case_id": "CASE-1", "purpose": "risk_management",
                               "subjects": [{"ref": "p-1", "category": "suspect"}], "now": NOW}
    args.update(kw)
    return wire.compose_message(keys["police"], "case_referral", dict(BODY), **args)  # type: ignore[arg-type]


def _broker_keys(keys: dict[str, AgencyKeys]) -> dict[str, object]:
    return {str(keys["broker"].enc.kid): keys["broker"].enc}


def test_submission_round_trip(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    msg = _message(agency_keys)
    jwe = wire.seal_submission(msg, agency_keys["broker"].enc)
    header = jose.peek_header(jwe, 5)
    assert header == {**header, "alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "masp+sd-jwt",
                      "kid": agency_keys["broker"].enc.kid}
    raw = wire.decrypt_submission(jwe, _broker_keys(agency_keys), 1 << 20)  # type: ignore[arg-type]
    sub = wire.verify_submission(raw, registry, NOW)
    assert sub.sender == "police"
    assert sub.message.claims == BODY
    jwt_header = jose.peek_header(sub.message.token.jwt, 3)
    assert jwt_header == {"alg": "Ed25519", "kid": agency_keys["police"].sig.kid, "typ": "masp+sd-jwt"}
    # the body never appears in clear inside the JWT; only digests (plus decoys) do, and so
    # do the subjects: each a digest in the array, its reference in a disclosure
    payload = sub.message.payload
    assert "victim_address" not in payload and "consent_ref" not in payload
    assert len(payload["_sd"]) == len(BODY) + 2 and payload["_sd_alg"] == "sha-256"
    assert [set(s) for s in payload["subjects"]] == [{"..."}]
    assert sub.claims["subjects"] == [{"ref": "p-1", "category": "suspect"}]


def test_subjects_and_consent_ref_are_disclosures(agency_keys: dict[str, AgencyKeys],
                                                  registry: KeyRegistry) -> None:
    msg = _message(agency_keys, consent_ref="CONSENT-1", subjects=[
        {"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}])
    assert "VIC-1" not in jose.b64url_decode(msg.jwt.split(".")[1]).decode()
    assert "CONSENT-1" not in jose.b64url_decode(msg.jwt.split(".")[1]).decode()
    sub = wire.verify_submission(msg.serialize(), registry, NOW)
    assert sub.claims["consent_ref"] == "CONSENT-1"
    assert [s["ref"] for s in sub.claims["subjects"]] == ["19/4471023K", "VIC-1"]
    # a recipient shown only the suspect sees one subject, no consent ref, no body field
    suspect = sub.message.subjects[0]
    shown = sdjwt.verify(msg.present([suspect.digest]), _lookup(registry))
    assert [d.value for d in shown.subjects] == [{"ref": "19/4471023K", "category": "suspect"}]
    assert shown.envelope == {} and shown.claims == {}


def _lookup(registry: KeyRegistry) -> jose.KeyLookup:
    return lambda kid: registry.get(kid, use="sig")


def _resign(keys: dict[str, AgencyKeys], msg: sdjwt.SdJwt, **changes: object) -> sdjwt.SdJwt:
    """The same disclosures under a payload changed as an attacker likes, signed by police."""
    payload = json.loads(jose.b64url_decode(msg.jwt.split(".")[1]))
    payload.update(changes)
    return sdjwt.SdJwt(jose.sign(payload, keys["police"].sig, sdjwt.TYP), msg.disclosures)


def test_rfc9901_structure_is_enforced(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    msg = _message(agency_keys)
    payload = json.loads(jose.b64url_decode(msg.jwt.split(".")[1]))
    first = payload["_sd"][0]
    cases = {
        "a digest listed twice in _sd": {"_sd": [*payload["_sd"], first]},
        "a digest both in _sd and subjects": {"subjects": [*payload["subjects"], {"...": first}]},
        "a subjects entry that is not a digest": {"subjects": [{"ref": "VIC-1", "category": "victim"}]},
        "a digest hidden in a nested object": {"override": {"_sd": [first]}},
        "consent_ref in clear": {"consent_ref": "CONSENT-1"},
        "an extra clear claim": {"note": "Jane Smith, 14 Larkspur Road"},
    }
    for why, change in cases.items():
        bad = _resign(agency_keys, msg, **change)
        with pytest.raises((MalformedMessage, DisclosureMismatch)) as info:
            wire.verify_submission(bad.serialize(), registry, NOW)
        assert "Larkspur" not in str(info.value), why


def test_an_element_disclosure_is_not_a_property_and_back(agency_keys: dict[str, AgencyKeys],
                                                          registry: KeyRegistry) -> None:
    msg = _message(agency_keys)
    element = next(d for d in msg.disclosures if d.is_element)
    prop = next(d for d in msg.disclosures if not d.is_element)
    payload = json.loads(jose.b64url_decode(msg.jwt.split(".")[1]))
    # swap the slots: the element's digest in _sd, a property's digest in subjects
    swapped = _resign(agency_keys, msg, _sd=[*(d for d in payload["_sd"] if d != prop.digest),
                                              element.digest],
                      subjects=[{"...": prop.digest}])
    with pytest.raises(DisclosureMismatch):
        wire.verify_submission(swapped.serialize(), registry, NOW)


def test_envelope_errors_never_repeat_the_value(agency_keys: dict[str, AgencyKeys],
                                                registry: KeyRegistry) -> None:
    for kw in ({"case_id": "JANE SMITH 14 LARKSPUR ROAD"},
               {"subjects": [{"ref": "Jane Smith, 14 Larkspur Road", "category": "victim"}]},
               {"subjects": [{"ref": "VIC-1", "category": "Jane Smith"}]},
               {"purpose": "Jane Smith"}, {"consent_ref": "Jane Smith"}):
        with pytest.raises(MalformedMessage) as info:
            wire.verify_submission(_message(agency_keys, **kw).serialize(), registry, NOW)
        assert "jane" not in str(info.value).lower() and "larkspur" not in str(info.value).lower()


def test_disclosure_digest_and_salt(agency_keys: dict[str, AgencyKeys]) -> None:
    msg = _message(agency_keys)
    for d in msg.disclosures:
        decoded = json.loads(jose.b64url_decode(d.encoded))
        assert len(jose.b64url_decode(decoded[0])) >= 16
        if d.is_element:  # [salt, subject]
            assert decoded[1] == {"ref": "p-1", "category": "suspect"}
        else:
            assert BODY[decoded[1]] == decoded[2]
    assert len({d.salt for d in msg.disclosures}) == len(BODY) + 1


def test_tampered_ciphertext_refused(agency_keys: dict[str, AgencyKeys]) -> None:
    jwe = wire.seal_submission(_message(agency_keys), agency_keys["broker"].enc)
    parts = jwe.split(".")
    ct = bytearray(jose.b64url_decode(parts[3]))
    ct[5] ^= 0x01
    parts[3] = jose.b64url_encode(bytes(ct))
    with pytest.raises(DecryptionFailed):
        wire.decrypt_submission(".".join(parts), _broker_keys(agency_keys), 1 << 20)  # type: ignore[arg-type]


def test_compressed_and_wrong_alg_refused(agency_keys: dict[str, AgencyKeys]) -> None:
    jwe = wire.seal_submission(_message(agency_keys), agency_keys["broker"].enc)
    parts = jwe.split(".")
    header = json.loads(jose.b64url_decode(parts[0]))
    for change in ({"zip": "DEF"}, {"alg": "RSA1_5"}, {"enc": "A128CBC-HS256"}, {"cty": "json"}):
        parts[0] = jose.b64url_encode(json.dumps({**header, **change}).encode())
        with pytest.raises(DecryptionFailed):
            wire.decrypt_submission(".".join(parts), _broker_keys(agency_keys), 1 << 20)  # type: ignore[arg-type]


def test_wrong_signature_refused(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    msg = _message(agency_keys)
    head, payload, sig = msg.jwt.split(".")
    forged = bytearray(jose.b64url_decode(sig))
    forged[0] ^= 0xFF
    bad = sdjwt.SdJwt(f"{head}.{payload}.{jose.b64url_encode(bytes(forged))}", msg.disclosures)
    with pytest.raises(SignatureInvalid):
        wire.verify_submission(bad.serialize(), registry, NOW)


def test_key_may_not_sign_for_another_agency(agency_keys: dict[str, AgencyKeys],
                                             registry: KeyRegistry) -> None:
    probation_as_police = AgencyKeys("police", agency_keys["probation"].sig, agency_keys["probation"].enc)
    msg = _message({"police": probation_as_police})
    with pytest.raises(SignatureInvalid, match="does not belong to the claimed issuer"):
        wire.verify_submission(msg.serialize(), registry, NOW)


def test_unknown_sender_refused(registry: KeyRegistry) -> None:
    stranger = AgencyKeys.generate("council", NOW.date())
    msg = wire.compose_message(stranger, "case_referral", dict(BODY), case_id="C-1", purpose="p",
                               subjects=[], now=NOW)
    with pytest.raises(UnknownSender):
        wire.verify_submission(msg.serialize(), registry, NOW)


def test_expired_and_future_messages_refused(agency_keys: dict[str, AgencyKeys],
                                             registry: KeyRegistry) -> None:
    old = _message(agency_keys, now=NOW - timedelta(hours=2), ttl=timedelta(hours=1))
    with pytest.raises(MessageExpired, match="expired"):
        wire.verify_submission(old.serialize(), registry, NOW)
    future = _message(agency_keys, now=NOW + timedelta(hours=1))
    with pytest.raises(MessageExpired, match="future"):
        wire.verify_submission(future.serialize(), registry, NOW)
    with pytest.raises(MalformedMessage):
        _message(agency_keys, ttl=timedelta(hours=25))


def test_foreign_disclosure_refused(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    msg = _message(agency_keys)
    smuggled = sdjwt.Disclosure.create("victim_address", {"line1": "elsewhere"})
    bad = sdjwt.SdJwt(msg.jwt, (*msg.disclosures, smuggled))
    with pytest.raises(DisclosureMismatch):
        wire.verify_submission(bad.serialize(), registry, NOW)
    dup = sdjwt.SdJwt(msg.jwt, (*msg.disclosures, msg.disclosures[0]))
    with pytest.raises(DisclosureMismatch):
        wire.verify_submission(dup.serialize(), registry, NOW)
    # an unsigned disclosure's name is the sender's: the refusal does not repeat it
    named = sdjwt.Disclosure.create("Jane Smith 14 Larkspur Road", "x")
    with pytest.raises(DisclosureMismatch) as info:
        wire.verify_submission(sdjwt.SdJwt(msg.jwt, (*msg.disclosures, named)).serialize(), registry, NOW)
    assert "Larkspur" not in str(info.value)


def _delivery(keys: dict[str, AgencyKeys], to: str, names: list[str], **over: object) -> str:
    msg = _message(keys)
    shown = msg.present(d.digest for d in msg.disclosures if d.name in names)
    claims = {"aud": to, "jti": wire.new_id(), "message_id": wire.verify_submission(
        msg.serialize(), _registry_of(keys), NOW).message_id, "sender": "police",
        "masp_type": "case_referral", "purpose": "risk_management",
        "disclosed": [d.digest for d in shown.disclosures]}
    claims.update(over)
    token = wire.sign_delivery_token(keys["broker"], claims)
    return wire.seal_delivery(shown, token, keys[to].enc)


def _registry_of(keys: dict[str, AgencyKeys]) -> KeyRegistry:
    reg = KeyRegistry()
    for k in keys.values():
        reg.add(k.sig)
        reg.add(k.enc)
    return reg


def test_delivery_opens_and_verifies(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    jwe = _delivery(agency_keys, "nhs", ["perpetrator_name", "offence_codes"])
    d = wire.open_delivery(jwe, agency_keys["nhs"], registry)
    assert set(d.message.claims) == {"perpetrator_name", "offence_codes"}
    assert d.token["aud"] == "nhs" and d.token["iss"] == "broker"
    ack = wire.verify_ack(wire.sign_ack(agency_keys["nhs"], d, NOW), registry, NOW)
    assert ack["status"] == "accepted" and ack["delivery_id"] == d.delivery_id
    assert isinstance(ack["jti"], str) and ack["exp"] - ack["iat"] == 24 * 3600


def test_delivery_checks(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    with pytest.raises(DecryptionFailed):  # addressed to nhs, opened by probation
        wire.open_delivery(_delivery(agency_keys, "nhs", ["offence_codes"]),
                           agency_keys["probation"], registry)
    with pytest.raises(SignatureInvalid, match="another agency"):
        wire.open_delivery(_delivery(agency_keys, "nhs", ["offence_codes"], aud="probation"),
                           agency_keys["nhs"], registry)
    with pytest.raises(SignatureInvalid, match="differ"):
        wire.open_delivery(_delivery(agency_keys, "nhs", ["offence_codes"], disclosed=[]),
                           agency_keys["nhs"], registry)
    with pytest.raises(SignatureInvalid, match="another purpose"):
        wire.open_delivery(_delivery(agency_keys, "nhs", ["offence_codes"], purpose="safeguarding"),
                           agency_keys["nhs"], registry)


def test_agency_auth(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    tok = wire.sign_agency_auth(agency_keys["police"], NOW)
    assert wire.verify_agency_auth(tok, registry, NOW, timedelta(minutes=5))["sub"] == "police"
    with pytest.raises(MessageExpired):
        wire.verify_agency_auth(tok, registry, NOW + timedelta(minutes=2), timedelta(minutes=5))


@pytest.mark.parametrize("claim", ["delivery_id", "message_id"])
@pytest.mark.parametrize("value", [None, "", 7, ["x"], "x" * 65])
def test_an_ack_without_its_identifiers_is_malformed_not_a_crash(
        agency_keys: dict[str, AgencyKeys], registry: KeyRegistry, claim: str, value: object) -> None:
    """Missing or mistyped ids were a KeyError (a plain-text 500 over HTTP): now a typed refusal
    naming the claim, never its value."""
    payload = _ack_claims()
    if value is None:
        del payload[claim]
    else:
        payload[claim] = value
    token = jose.sign(payload, agency_keys["nhs"].sig, wire.TYP_ACK)
    with pytest.raises(MalformedMessage, match=f"claim {claim} must be") as caught:
        wire.verify_ack(token, registry, NOW)
    assert "xxxx" not in str(caught.value) and caught.value.extensions["claim"] == claim


def _ack_claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {"iss": "nhs", "aud": "broker", "delivery_id": "d-1", "message_id": "m-1",
                                 "status": "accepted", "iat": wire.epoch(NOW), "jti": "j-1",
                                 "exp": wire.epoch(NOW + timedelta(minutes=5))}
    return {**claims, **changes}


@pytest.mark.parametrize("claim", ["jti", "iat", "exp"])
@pytest.mark.parametrize("value", [None, "", 1.5, True, ["x"], "x" * 65])
def test_an_ack_without_jti_iat_or_exp_is_malformed(
        agency_keys: dict[str, AgencyKeys], registry: KeyRegistry, claim: str, value: object) -> None:
    payload = _ack_claims()
    if value is None:
        del payload[claim]
    else:
        payload[claim] = value
    if claim == "jti" and value in (True, 1.5):
        payload[claim] = 7
    token = jose.sign(payload, agency_keys["nhs"].sig, wire.TYP_ACK)
    with pytest.raises(MalformedMessage, match=f"claim {claim} must be") as caught:
        wire.verify_ack(token, registry, NOW)
    assert caught.value.extensions["claim"] == claim


@pytest.mark.parametrize(("changes", "why"), [
    ({"exp": wire.epoch(NOW)}, "expired"),
    ({"exp": wire.epoch(NOW - timedelta(hours=1))}, "expired"),
    ({"iat": wire.epoch(NOW + timedelta(minutes=6)), "exp": wire.epoch(NOW + timedelta(hours=1))}, "future"),
    ({"exp": wire.epoch(NOW + timedelta(hours=24, seconds=1))}, "24 hours"),
    ({"iat": 10**15, "exp": 10**15 + 1}, "out of range"),
])
def test_an_ack_outside_its_lifetime_is_refused(agency_keys: dict[str, AgencyKeys], registry: KeyRegistry,
                                                changes: dict[str, object], why: str) -> None:
    token = jose.sign(_ack_claims(**changes), agency_keys["nhs"].sig, wire.TYP_ACK)
    with pytest.raises((MessageExpired, MalformedMessage), match=why):
        wire.verify_ack(token, registry, NOW)


def test_an_ack_at_the_edges_of_its_lifetime_is_accepted(agency_keys: dict[str, AgencyKeys],
                                                         registry: KeyRegistry) -> None:
    soon = wire.epoch(NOW + timedelta(minutes=5))
    for changes in ({"exp": wire.epoch(NOW) + 1},
                    {"iat": soon, "exp": wire.epoch(NOW + timedelta(hours=1))},
                    {"exp": wire.epoch(NOW + timedelta(hours=24))}):
        token = jose.sign(_ack_claims(**changes), agency_keys["nhs"].sig, wire.TYP_ACK)
        assert wire.verify_ack(token, registry, NOW)["jti"] == "j-1"


@pytest.mark.parametrize("claim", ["iat", "exp"])
def test_an_assertion_whose_times_are_not_integers_is_malformed(
        agency_keys: dict[str, AgencyKeys], registry: KeyRegistry, claim: str) -> None:
    """``true`` is an int to Python's isinstance; it is no NumericDate."""
    payload = {"iss": "police", "sub": "police", "aud": "broker", "jti": "j-1",
               "iat": wire.epoch(NOW), "exp": wire.epoch(NOW + timedelta(seconds=60)), claim: True}
    token = jose.sign(payload, agency_keys["police"].sig, wire.TYP_AUTH)
    with pytest.raises(MalformedMessage, match="assertion needs jti, iat and exp"):
        wire.verify_agency_auth(token, registry, NOW, timedelta(minutes=5))


def test_an_ack_reason_keeps_an_ascii_code_only() -> None:
    from broker.acks import _reason_code

    assert _reason_code("duplicate-of:REF_12 ok") == "duplicate-of:REF_12 ok"
    assert _reason_code("émigré réf") == "migr rf"
    assert _reason_code("名前") is None and _reason_code(7) is None
    assert _reason_code("x" * 100) == "x" * 64


def test_everything_the_broker_verifies_accepts_the_eddsa_name(
        agency_keys: dict[str, AgencyKeys], registry: KeyRegistry) -> None:
    """An agency whose library signs with RFC 8037's name is as good as one that uses RFC 9864's:
    message, bearer assertion and acknowledgement alike."""
    police = agency_keys["police"]
    msg = _message(agency_keys)
    payload = json.loads(jose.b64url_decode(msg.jwt.split(".")[1]))
    renamed = sdjwt.SdJwt(jose.sign(payload, police.sig, "masp+sd-jwt", "EdDSA"), msg.disclosures)
    assert jose.peek_header(renamed.jwt, 3)["alg"] == "EdDSA"
    sub = wire.verify_submission(renamed.serialize(), registry, NOW)
    assert sub.message_id == payload["jti"] and sub.message.claims == BODY

    assertion = jose.sign({"iss": "police", "sub": "police", "aud": "broker", "jti": "j-9",
                           "iat": wire.epoch(NOW), "exp": wire.epoch(NOW + timedelta(seconds=60))},
                          police.sig, wire.TYP_AUTH, "EdDSA")
    assert wire.verify_agency_auth(assertion, registry, NOW, timedelta(minutes=5))["sub"] == "police"
    ack = jose.sign(_ack_claims(), agency_keys["nhs"].sig, wire.TYP_ACK, "EdDSA")
    assert wire.verify_ack(ack, registry, NOW)["status"] == "accepted"
    with pytest.raises(SignatureInvalid, match="must be Ed25519"):
        jose.sign(payload, police.sig, "masp+sd-jwt", "ES256")


@pytest.mark.parametrize("entry", ["not-a-digest", "A" * 42, "A" * 44, "A" * 42 + "B", "=" * 43, ""])
@pytest.mark.parametrize("where", ["_sd", "subjects"])
def test_what_stands_where_a_digest_goes_has_a_digests_shape(
        agency_keys: dict[str, AgencyKeys], registry: KeyRegistry, entry: str, where: str) -> None:
    """A decoy is any digest no disclosure matches, but it is still a digest: 43 characters of
    canonical base64url. Anything else is refused before it reaches a recipient's validator."""
    msg = _message(agency_keys)
    payload = json.loads(jose.b64url_decode(msg.jwt.split(".")[1]))
    if where == "_sd":
        payload["_sd"] = sorted([*payload["_sd"], entry])
    else:
        payload["subjects"] = [*payload["subjects"], {"...": entry}]
    forged = sdjwt.SdJwt(jose.sign(payload, agency_keys["police"].sig, "masp+sd-jwt"), msg.disclosures)
    with pytest.raises(MalformedMessage, match="base64url SHA-256 digest"):
        wire.verify_submission(forged.serialize(), registry, NOW)
    payload[where] = payload[where][:-1] if where == "subjects" else [d for d in payload["_sd"] if d != entry]
    honest = sdjwt.SdJwt(jose.sign(payload, agency_keys["police"].sig, "masp+sd-jwt"), msg.disclosures)
    assert wire.verify_submission(honest.serialize(), registry, NOW).message_id == payload["jti"]
