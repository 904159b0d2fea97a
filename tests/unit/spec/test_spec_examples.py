"""docs/spec/ stays true to the code: its examples are what the code builds, its pages show
them verbatim, its schemas accept them, and its problem catalogue names every code.

Regenerate after an intended change: ``.venv/bin/python -m tests.unit.spec.generate``.
"""

from __future__ import annotations

import asyncio
import json
import re
from functools import partial
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

import broker.errors
from broker import wire
from broker.crypto import jose, sdjwt
from broker.crypto.keys import AGENCIES, BROKER, public_jwk
from broker.errors import MaspError
from tests.unit.spec import generate as gen

SCHEMAS = gen.SPEC / "schemas"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every example built again, now, by the code as it is."""
    return asyncio.run(gen.generate(tmp_path_factory.mktemp("examples")))


def committed(name: str) -> str:
    return (gen.EXAMPLES / name).read_text()


def committed_json(name: str) -> Any:
    return json.loads(committed(name))


# --- the examples are what the code builds -------------------------------------------------


def test_the_same_examples_are_committed(fresh: dict[str, str]) -> None:
    on_disk = {p.name for p in gen.EXAMPLES.iterdir() if p.is_file()}
    assert on_disk == set(fresh)


def test_signed_examples_are_byte_identical(fresh: dict[str, str]) -> None:
    """Ed25519 is deterministic: from the fixed keys, clock, ids and salts, every signed
    object (and every JSON answer that holds one) comes out the same, byte for byte."""
    for name, text in fresh.items():
        if name not in gen.RANDOM_FILES:
            assert committed(name) == text, f"docs/spec/examples/{name} drifted from the code"


def test_the_submission_opens_to_the_message() -> None:
    keys = gen.fixed_keys()
    jwe = committed("submission.jwe").strip()
    assert jose.peek_header(jwe, 5)["kid"] == "broker-enc-20261101"
    raw = wire.decrypt_submission(jwe, keys[BROKER].decryption_keys(), 256 * 1024)
    assert raw == committed("message.sd-jwt").strip()


def test_the_delivery_opens_and_verifies_as_a_recipient_must() -> None:
    keys = gen.fixed_keys()
    jwe = committed("delivery.nhs.jwe").strip()
    plaintext = jose.decrypt(jwe, keys["nhs"].decryption_keys(), wire.CTY_DELIVERY)
    assert json.loads(plaintext) == committed_json("delivery.nhs.body.json")
    delivery = wire.open_delivery(jwe, keys["nhs"], gen.fixed_registry(keys))
    assert delivery.token == committed_json("delivery.nhs.token.decoded.json")["payload"]
    assert delivery.message.claims == committed_json("delivery.nhs.view.json")["fields"]


def test_the_receipt_digest_is_recomputable_from_the_message() -> None:
    """payload_digest is SHA-256 (hex) of the SD-JWT's ASCII bytes, exactly as submitted."""
    import hashlib

    sd_jwt = committed("message.sd-jwt").strip()
    digest = "sha-256:" + hashlib.sha256(sd_jwt.encode("ascii")).hexdigest()
    assert committed_json("receipt.decoded.json")["payload"]["payload_digest"] == digest


def test_the_message_example_verifies_and_its_digests_are_its_disclosures() -> None:
    keys = gen.fixed_keys()
    message = sdjwt.verify(committed("message.sd-jwt").strip(), lambda kid: gen.fixed_registry(keys).get(
        kid, use="sig", agency="police"))
    decoded = committed_json("message.decoded.json")
    assert [d["digest"] for d in decoded["disclosures"]] == [d.digest for d in message.disclosures]
    for d in decoded["disclosures"]:
        assert json.loads(jose.b64url_decode(d["disclosure"])) == d["decoded"]


def test_the_keys_are_the_derived_test_keys() -> None:
    """The published public halves are those of the keys derived from their kids, and no
    private half is stored beside them."""
    for party in (*AGENCIES, BROKER):
        for use in ("sig", "enc"):
            published = json.loads((gen.KEYS / party / f"{use}.public.jwk").read_text())
            assert published == public_jwk(gen.derive_key(party, use)) and "d" not in published
    assert not list(gen.KEYS.rglob("*.private.jwk"))


# --- the pages show the examples --------------------------------------------------------------


def test_the_broker_signs_for_an_agency_with_the_alg_name_it_registered() -> None:
    """probation registered EdDSA in the example run; nhs and police have the default."""
    assert committed_json("delivery.probation.token.decoded.json")["header"]["alg"] == "EdDSA"
    assert committed_json("delivery.nhs.token.decoded.json")["header"]["alg"] == "Ed25519"
    assert committed_json("receipt.decoded.json")["header"]["alg"] == "Ed25519"


def test_every_example_block_shows_its_file() -> None:
    pages = sorted(gen.SPEC.glob("*.md"))
    shown = set()
    for page in pages:
        text = page.read_text()
        for m in [*gen.EXAMPLE_BLOCK.finditer(text), *gen.GENERATED_BLOCK.finditer(text)]:
            path = page.parent / m["path"]
            assert path.is_file(), f"{page.name} shows {m['path']}, which does not exist"
            shown.add(path.name)
        assert gen.render_docs(text, partial(gen._read_beside, page.parent)) == text, (
            f"an example block of docs/spec/{page.name} differs from its file: run the generator")
    assert "(generated)" not in "".join(p.read_text() for p in pages)
    assert {"message.sd-jwt", "receipt-response.json", "delivery.nhs.body.json", "ack.jwt"} <= shown


def test_every_problem_code_is_in_the_catalogue() -> None:
    catalogue = (gen.SPEC / "problems.md").read_text()
    listed = set(re.findall(r"^\| `([a-z0-9<>-]+)` \|", catalogue, re.M))
    codes = {cls.code for cls in vars(broker.errors).values()
             if isinstance(cls, type) and issubclass(cls, MaspError)}
    assert codes <= listed, f"problem codes missing from docs/spec/problems.md: {sorted(codes - listed)}"
    assert {"invalid-request", "http-<status>"} <= listed


# --- the schemas accept the examples --------------------------------------------------------


def _registry() -> Registry:
    resources = []
    for path in SCHEMAS.glob("*.schema.json"):
        schema = json.loads(path.read_text())
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    return Draft202012Validator(schema, registry=REGISTRY, format_checker=FormatChecker())


def assert_valid(schema: str, instance: Any) -> None:
    errors = sorted(validator(schema).iter_errors(instance), key=str)
    assert not errors, f"{schema}: " + "; ".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_the_schemas_are_valid_draft_2020_12() -> None:
    for path in SCHEMAS.glob("*.schema.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def _header(decoded: dict[str, Any], typ: str) -> None:
    assert_valid("jws-header.schema.json", decoded["header"])
    assert decoded["header"]["typ"] == typ


@pytest.mark.parametrize(("example", "schema", "typ"), [
    ("auth-assertion.decoded.json", "auth-assertion.schema.json", "JWT"),
    ("message.decoded.json", "message-payload.schema.json", "masp+sd-jwt"),
    ("receipt.decoded.json", "receipt.schema.json", "masp-receipt+jwt"),
    ("delivery.nhs.token.decoded.json", "delivery-token.schema.json", "masp-delivery+jwt"),
    ("delivery.probation.token.decoded.json", "delivery-token.schema.json", "masp-delivery+jwt"),
    ("ack.decoded.json", "ack.schema.json", "masp-ack+jwt"),
    ("notice.decoded.json", "notice.schema.json", "masp-notice+jwt"),
])
def test_signed_examples_match_their_schemas(example: str, schema: str, typ: str) -> None:
    decoded = committed_json(example)
    _header(decoded, typ)
    assert_valid(schema, decoded["payload"])


@pytest.mark.parametrize(("example", "schema"), [
    ("receipt-response.json", "receipt-response.schema.json"),
    ("delivery.nhs.body.json", "delivery-body.schema.json"),
    ("ack-response.json", "ack-response.schema.json"),
    ("ack-response.duplicate.json", "ack-response.schema.json"),
    ("mailbox-list.json", "mailbox-list.schema.json"),
    ("message-status.json", "message-status.schema.json"),
    ("deliveries-list.json", "deliveries-list.schema.json"),
    ("notices-list.json", "notices-list.schema.json"),
    ("jwks.json", "jwks.schema.json"),
    ("agency-keys.json", "jwks.schema.json"),
])
def test_json_examples_match_their_schemas(example: str, schema: str) -> None:
    assert_valid(schema, committed_json(example))


def test_the_settled_mailbox_item_is_a_delivery_summary() -> None:
    assert_valid("mailbox-list.schema.json", {"deliveries": [committed_json("mailbox-item.settled.json")]})


def test_every_event_matches_the_event_schema() -> None:
    events = committed_json("events.json")
    names = {e["body"]["event"] for e in events}
    assert names >= {"message.accepted", "delivery.waiting", "delivery.expired"}
    for e in events:
        assert_valid("event.schema.json", e["body"])
        assert e["routing_key"] == f"{e['body']['agency']}.{e['body']['event']}"


def test_every_problem_example_matches_the_problem_schema() -> None:
    for code, problem in committed_json("problems.json").items():
        assert problem["code"] == code
        assert_valid("problem.schema.json", problem)


def test_the_envelope_schema_accepts_the_example_envelope() -> None:
    decoded = committed_json("message.decoded.json")
    clear = {k: v for k, v in decoded["payload"].items() if k not in ("_sd", "_sd_alg", "subjects")}
    elements = [d["decoded"] for d in decoded["disclosures"] if len(d["decoded"]) == 2]
    assert_valid("envelope.schema.json", {**clear, "subjects": [e[1] for e in elements]})
    subject = validator("envelope.schema.json").evolve(
        schema={"$ref": "https://masp.example/spec/masp-wire-2/envelope.schema.json#/$defs/subject_disclosure"})
    for element in elements:
        assert not list(subject.iter_errors(element))


def test_the_jwe_headers_match_the_jwe_schema() -> None:
    for name in gen.RANDOM_FILES:
        assert_valid("jwe-header.schema.json", jose.peek_header(committed(name).strip(), 5))


def test_the_minimised_delivery_body_validates_against_its_received_schemas() -> None:
    fields = committed_json("delivery.nhs.view.json")["fields"]
    served = committed_json("schema.nhs.cj_status_update.json")
    assert "required" not in served and served["additionalProperties"] is False
    assert "offence_codes" not in served["properties"] and "cj_status" in served["properties"]
    assert not list(Draft202012Validator(served, format_checker=FormatChecker()).iter_errors(fields))
    bodies = gen.REPO / "schemas" / "json"
    schema = json.loads((bodies / "cj_status_update.v1.received.schema.json").read_text())
    assert not list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(fields))
    sender = json.loads((bodies / "cj_status_update.v1.schema.json").read_text())
    assert list(Draft202012Validator(sender).iter_errors({"next_hearing": fields["next_hearing"]}))


# --- what the code produces now, outside the example run --------------------------------------


def test_a_fresh_assertion_and_message_match_their_schemas() -> None:
    keys = gen.fixed_keys()
    assertion = gen.decode_jws(wire.sign_agency_auth(keys["probation"], gen.NOW))
    _header(assertion, "JWT")
    assert_valid("auth-assertion.schema.json", assertion["payload"])
    message = wire.compose_message(keys["probation"], "risk_level_change", {
        "risk_tool": "srp", "new_risk_level": "high", "risk_rationale": "Escalating contact.",
        "risk_assessed_on": "2026-11-20"}, case_id="HIOW-MASP-2026-0147", purpose="risk_management",
        subjects=[{"ref": "X482913", "category": "convicted"}], now=gen.NOW,
        consent_ref="CONSENT-0147-V1")
    decoded = gen.decode_sd_jwt(message.serialize())
    assert_valid("message-payload.schema.json", decoded["payload"])
    envelope = validator("envelope.schema.json")
    for name in ("consent_ref_disclosure", "subject_disclosure", "body_disclosure"):
        check = envelope.evolve(schema={"$ref": f"{envelope.schema['$id']}#/$defs/{name}"})
        assert any(not list(check.iter_errors(d["decoded"])) for d in decoded["disclosures"]), name


def test_the_code_signs_acks_as_the_spec_says() -> None:
    keys = gen.fixed_keys()
    ack = gen.decode_jws(wire.sign_ack(keys["nhs"], {"delivery_id": "d-1", "message_id": "m-1"}, gen.NOW))
    assert_valid("ack.schema.json", ack["payload"])


def test_the_code_serves_key_sets_as_the_spec_says() -> None:
    registry = gen.fixed_registry(gen.fixed_keys())
    broker_set, agency_set = registry.jwks(gen.NOW, broker=True), registry.jwks(gen.NOW, broker=False)
    assert_valid("jwks.schema.json", broker_set)
    assert_valid("jwks.schema.json", agency_set)
    assert {k["masp_agency"] for k in broker_set["keys"]} == {BROKER}
    assert {k["masp_agency"] for k in agency_set["keys"]} == set(AGENCIES)
