"""Build every worked example of docs/spec/ with the project's own code, from fixed test keys.

    .venv/bin/python -m tests.unit.spec.generate          # rewrite docs/spec/examples/
    .venv/bin/python -m tests.unit.spec.generate --keys   # (re)derive the fixed test keys first

The broker runs in process (the HTTP API over ASGI, a SQLite file, no RabbitMQ) on a frozen
clock, with message, delivery and notice ids and SD-JWT salts drawn from fixed sequences, so
every signed object is reproducible byte for byte (Ed25519 is deterministic). JWEs are not
(fresh ephemeral keys and IVs): ``tests/unit/spec/test_spec_examples.py`` checks those by
decrypting them with the fixed keys. The keys are derived from their kid, so anyone can see
they are test keys: never register them anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import OKPKey
from sqlalchemy import select

import schemas
from broker import policy, wire
from broker.api.app import create_app
from broker.audit.entry import AuditEntry
from broker.clock import FrozenClock
from broker.crypto import jose, sdjwt
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys, KeyId, KeyRegistry, public_jwk
from broker.safeguarding import SafeguardingTimers
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.store.models import AuditRow
from broker.transport.events import events_for

REPO = Path(__file__).resolve().parents[3]
SPEC = REPO / "docs" / "spec"
EXAMPLES = SPEC / "examples"
KEYS = EXAMPLES / "keys"
NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
KEY_DAY = date(2026, 11, 1)
PARTIES = (*AGENCIES, BROKER)
#: What makes every id and salt reproducible; published, like the keys: test material only.
SEED = b"masp-wire/2 example"
PSEUDONYM_SECRET = "masp-wire-2-example-pseudonym-secret"

MESSAGE_ID = "01a1fd8c-6900-7000-8000-00000000a001"  # a UUIDv7 of NOW
CASE_ID = "HIOW-MASP-2026-0147"
SUBJECTS = [{"ref": "P-7F3A2C", "category": "suspect"}, {"ref": "V-19B4E0", "category": "victim"}]
BODY: dict[str, Any] = {
    "cj_status": "charged",
    "effective_date": "2026-11-20",
    "next_hearing": {"on": "2026-12-11", "court": "Southampton Magistrates' Court",
                     "kind": "first_appearance"},
    "offence_codes": ["PH97021"],
    "crime_reference": "44260012345",
}
#: The victim's consent to sharing with advocacy, as police record it (docs/spec/message.md#consent).
VICTIM = SUBJECTS[1]
CONSENT_REF = "CONSENT-0147-V1"
CONSENT_BODY: dict[str, Any] = {
    "victim_consent": {
        "status": "given",
        "scope": {"purposes": ["risk_management", "victim_support", "safeguarding"],
                  "recipients": ["advocacy"],
                  "message_types": ["case_referral", "cj_status_update", "risk_level_change"]},
        "effective_date": "2026-11-21",
        "given_by": "subject",
    },
}

#: Files that hold a JWE: random, so checked by decryption, never byte for byte.
RANDOM_FILES = frozenset({"submission.jwe", "delivery.nhs.jwe"})


# --- the fixed keys ----------------------------------------------------------------------


def _seed(*parts: str) -> bytes:
    return hashlib.sha256(SEED + b"/" + "/".join(parts).encode()).digest()


def derive_key(agency: str, use: str) -> OKPKey:
    """The fixed test key of ``agency`` for ``use``: its private scalar is SHA-256 of the seed
    and the kid, so it is the same wherever it is derived."""
    kid = str(KeyId(agency, "sig" if use == "sig" else "enc", KEY_DAY))
    seed = _seed("key", kid)
    if use == "sig":
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
        crv = "Ed25519"
    else:
        public = X25519PrivateKey.from_private_bytes(seed).public_key()  # type: ignore[assignment]
        crv = "X25519"
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return OKPKey.import_key({"kty": "OKP", "crv": crv, "d": jose.b64url_encode(seed),
                              "x": jose.b64url_encode(raw), "kid": kid, "use": use})


def write_keys(directory: Path = KEYS) -> None:
    """The public halves, as files; the private halves are derived where they are needed and
    never stored in the repository."""
    for agency in PARTIES:
        for use in ("sig", "enc"):
            path = directory / agency / f"{use}.public.jwk"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(public_jwk(derive_key(agency, use)), indent=2) + "\n")
    (directory / "README.md").write_text(
        "# Test keys: never use them for anything but the examples\n\n"
        "Fixed keys of the worked examples in `docs/spec/`. Only the public halves are files\n"
        "here (`<party>/{sig,enc}.public.jwk`); the private half of each is public knowledge\n"
        "all the same: its scalar `d` is SHA-256 of the ASCII text\n"
        "`masp-wire/2 example/key/<kid>`, base64url-encoded. A deployment that registers or\n"
        "trusts one of them has no security.\n")


def fixed_keys() -> dict[str, AgencyKeys]:
    """Every party's fixed test keys, private halves derived."""
    return {a: AgencyKeys(a, derive_key(a, "sig"), derive_key(a, "enc")) for a in PARTIES}


def fixed_registry(keys: dict[str, AgencyKeys]) -> KeyRegistry:
    reg = KeyRegistry()
    for k in keys.values():
        reg.add(k.sig)
        reg.add(k.enc)
    return reg


# --- reproducible ids and salts ------------------------------------------------------------


class Sequences:
    """Fixed stand-ins for the random parts the wire code draws: ids, salts, decoys."""

    def __init__(self) -> None:
        self.ids = 0
        self.salts = 0
        self.decoys = 0

    def new_id(self) -> str:
        """UUIDv7 at the examples' time, with a counter where the random bits go."""
        self.ids += 1
        ms = int(self._clock().timestamp() * 1000)
        value = (ms << 80) | (0x7 << 76) | (0b10 << 62) | self.ids
        return str(uuid.UUID(int=value))

    def salt(self) -> str:
        self.salts += 1
        return jose.b64url_encode(_seed("salt", str(self.salts))[: sdjwt.SALT_BYTES])

    def decoy(self) -> str:
        self.decoys += 1
        return sdjwt.digest_of(jose.b64url_encode(_seed("decoy", str(self.decoys))))

    _clock: FrozenClock = FrozenClock(NOW)

    @contextmanager
    def installed(self, clock: FrozenClock) -> Iterator[None]:
        self._clock = clock
        with mock.patch.object(wire, "new_id", self.new_id), \
                mock.patch.object(sdjwt, "_salt", self.salt), \
                mock.patch.object(sdjwt, "_decoy", self.decoy):
            yield


# --- rendering -----------------------------------------------------------------------------


def dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def decode_jws(token: str) -> dict[str, Any]:
    header, payload, _ = token.split(".")
    return {"header": json.loads(jose.b64url_decode(header)),
            "payload": json.loads(jose.b64url_decode(payload))}


def decode_sd_jwt(token: str) -> dict[str, Any]:
    parsed = sdjwt.SdJwt.parse(token)
    return {**decode_jws(parsed.jwt), "disclosures": [
        {"disclosure": d.encoded, "decoded": json.loads(jose.b64url_decode(d.encoded)),
         "digest": d.digest} for d in parsed.disclosures]}


class Out:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files: dict[str, str] = {}

    def text(self, name: str, text: str) -> None:
        self.files[name] = text
        (self.directory / name).write_text(text)

    def token(self, name: str, token: str) -> None:
        self.text(name, token + "\n")

    def json(self, name: str, value: Any) -> None:
        self.text(name, dump(value))


# --- the catalogue tables --------------------------------------------------------------------


def catalogue_classes() -> str:
    lines = ["| `masp_type` | field → data class |", "|---|---|"]
    for masp_type in schemas.MESSAGE_TYPES:
        classes = schemas.data_classes(masp_type)
        required = {n for n, f in schemas.body_model(masp_type).model_fields.items() if f.is_required()}
        cells = ", ".join(f"`{n}`{'*' if n in required else ''} {c.value}" for n, c in classes.items())
        lines.append(f"| `{masp_type}` | {cells} |")
    lines.append("")
    lines.append("`*` required in what the sender sends (a recipient may receive any subset).")
    return "\n".join(lines) + "\n"


def catalogue_flows(bundle: policy.DsaBundle) -> str:
    lines = ["| `masp_type` | sender | recipient | clause | purposes | data classes | consent |",
             "|---|---|---|---|---|---|---|"]
    rows = []
    for agreement in bundle.agreements:
        for clause in agreement.clauses:
            for masp_type in clause.message_types:
                for recipient in clause.to:
                    rows.append((list(schemas.MESSAGE_TYPES).index(masp_type), masp_type, clause.from_,
                                 recipient, f"{agreement.id}/{clause.id}",
                                 ", ".join(f"`{p}`" for p in clause.purposes),
                                 ", ".join(c.value for c in clause.data_classes),
                                 "required" if clause.requires_consent else ""))
    for row in sorted(rows):
        lines.append("| " + " | ".join(f"`{row[1]}`" if i == 0 else str(x)
                                       for i, x in enumerate(row[1:])) + " |")
    return "\n".join(lines) + "\n"


# --- the run -----------------------------------------------------------------------------


def _settings(state: Path) -> Settings:
    return Settings(state_dir=state, database_url=f"sqlite+aiosqlite:///{state / 'masp.db'}",
                    dsa_dir=REPO / "deploy" / "dsa", deployment="spec-example", namespace="",
                    pseudonym_secret=PSEUDONYM_SECRET, rate_limit="",
                    jws_alg_names={"probation": "EdDSA"})


async def generate(out_dir: Path = EXAMPLES) -> dict[str, str]:
    """Write every example into ``out_dir``; return {file name: text}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = Out(out_dir)
    keys = fixed_keys()
    registry = fixed_registry(keys)
    clock = FrozenClock(NOW)
    seq = Sequences()
    with tempfile.TemporaryDirectory() as tmp, seq.installed(clock):
        state = Path(tmp) / "state"
        settings = _settings(state)
        for party in PARTIES:
            keys[party].write(settings.keys_dir)
        init_state(settings, NOW.date())  # the audit log's key; agency keys are ours
        service = await BrokerService.open(settings, clock=clock)
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)),
                                 base_url="https://masp.example")
        try:
            await _run(out, keys, registry, clock, service, http)
        finally:
            await http.aclose()
            await service.close()
    return out.files


async def _run(out: Out, keys: dict[str, AgencyKeys], registry: KeyRegistry, clock: FrozenClock,
               service: BrokerService, http: httpx.AsyncClient) -> None:
    exchange = service.exchange

    def auth(agency: str) -> dict[str, str]:
        return {"authorization": f"Bearer {wire.sign_agency_auth(keys[agency], clock())}"}

    async def submit(message: sdjwt.SdJwt, agency: str) -> httpx.Response:
        return await http.post("/v1/messages", content=wire.seal_submission(message, keys[BROKER].enc),
                               headers={"content-type": "application/jose", **auth(agency)})

    out.json("jwks.json", (await http.get("/.well-known/jwks.json")).json())
    out.json("agency-keys.json", (await http.get("/v1/agency-keys")).json())
    out.text("catalogue-classes.md", catalogue_classes())
    out.text("catalogue-flows.md", catalogue_flows(exchange.bundle))

    assertion = wire.sign_agency_auth(keys["police"], clock())
    out.token("auth-assertion.jwt", assertion)
    out.json("auth-assertion.decoded.json", decode_jws(assertion))

    message = wire.compose_message(keys["police"], "cj_status_update", BODY, case_id=CASE_ID,
                                   purpose="risk_management", subjects=SUBJECTS, now=clock(),
                                   jti=MESSAGE_ID)
    out.token("message.sd-jwt", message.serialize())
    out.json("message.decoded.json", decode_sd_jwt(message.serialize()))
    jwe = wire.seal_submission(message, keys[BROKER].enc)
    out.token("submission.jwe", jwe)

    response = await http.post("/v1/messages", content=jwe.encode("ascii"), headers={
        "content-type": "application/jose", **auth("police")})
    assert response.status_code == 202, response.text
    receipt = response.json()
    out.json("receipt-response.json", receipt)
    out.token("receipt.jwt", receipt["receipt"])
    out.json("receipt.decoded.json", decode_jws(receipt["receipt"]))

    mailbox = (await http.get("/v1/mailbox", headers=auth("nhs"))).json()
    out.json("mailbox-list.json", mailbox)
    delivery_id = mailbox["deliveries"][0]["delivery_id"]
    fetched = await http.get(f"/v1/mailbox/{delivery_id}", headers=auth("nhs"))
    assert fetched.headers["content-type"].startswith("application/jose"), fetched.text
    out.token("delivery.nhs.jwe", fetched.text)
    plaintext = jose.decrypt(fetched.text, keys["nhs"].decryption_keys(), wire.CTY_DELIVERY)
    body = json.loads(plaintext)
    out.json("delivery.nhs.body.json", body)
    out.json("delivery.nhs.token.decoded.json", decode_jws(body["delivery"]))
    opened = wire.open_delivery(fetched.text, keys["nhs"], registry)
    out.json("delivery.nhs.view.json", {
        "message": {k: v for k, v in opened.message.payload.items() if k not in ("_sd", "_sd_alg")},
        "disclosed_envelope": {n: d.value for n, d in opened.message.envelope.items()},
        "disclosed_subjects": [d.value for d in opened.message.subjects],
        "fields": opened.message.claims})

    schema = await http.get("/v1/schemas/cj_status_update", headers=auth("nhs"))
    out.json("schema.nhs.cj_status_update.json", schema.json())
    listed = (await http.get("/v1/mailbox", headers=auth("probation"))).json()["deliveries"]
    for_probation = await http.get(f"/v1/mailbox/{listed[0]['delivery_id']}", headers=auth("probation"))
    token = json.loads(jose.decrypt(for_probation.text, keys["probation"].decryption_keys(),
                                    wire.CTY_DELIVERY))["delivery"]
    out.json("delivery.probation.token.decoded.json", decode_jws(token))

    ack = wire.sign_ack(keys["nhs"], opened, clock())
    out.token("ack.jwt", ack)
    out.json("ack.decoded.json", decode_jws(ack))
    acked = await http.post(f"/v1/mailbox/{delivery_id}/ack", content=ack.encode("ascii"), headers={
        "content-type": "application/jose", **auth("nhs")})
    assert acked.status_code == 200, acked.text
    out.json("ack-response.json", acked.json())
    again = await http.post(f"/v1/mailbox/{delivery_id}/ack", content=ack.encode("ascii"), headers={
        "content-type": "application/jose", **auth("nhs")})
    out.json("ack-response.duplicate.json", again.json())
    settled = await http.get(f"/v1/mailbox/{delivery_id}", headers=auth("nhs"))
    out.json("mailbox-item.settled.json", settled.json())

    # a day later: probation never acknowledged, so its delivery expires and police get a notice
    clock.advance(hours=25)
    await SafeguardingTimers(exchange, timedelta(hours=24)).sweep()
    out.json("message-status.json", (await http.get(f"/v1/messages/{MESSAGE_ID}",
                                                     headers=auth("police"))).json())
    out.json("deliveries-list.json", (await http.get("/v1/deliveries", headers=auth("police"))).json())
    notices = (await http.get("/v1/notices", headers=auth("police"))).json()
    out.json("notices-list.json", notices)
    out.json("notice.decoded.json", decode_jws(notices["notices"][0]["token"]))

    async with exchange.sessions() as session:
        rows = (await session.execute(select(AuditRow).order_by(AuditRow.seq))).scalars().all()  # type: ignore[arg-type]
    out.json("events.json", [{"routing_key": key, "body": event} for row in rows
                             for key, event in events_for(AuditEntry.from_leaf(row.leaf))])

    # refusals a client will meet first
    problems: dict[str, Any] = {}
    # no clause lets police send a risk_level_change for intervention (refused before the body is read)
    stale = wire.compose_message(keys["police"], "risk_level_change", BODY, case_id=CASE_ID,
                                 purpose="intervention", subjects=SUBJECTS, now=clock(),
                                 jti=wire.new_id())
    refused = await http.post("/v1/messages", content=wire.seal_submission(stale, keys[BROKER].enc),
                              headers={"content-type": "application/jose", **auth("police")})
    problems["purpose-not-agreed"] = refused.json()
    replay = wire.compose_message(keys["police"], "cj_status_update", {**BODY, "cj_status": "convicted"},
                                  case_id=CASE_ID, purpose="risk_management", subjects=SUBJECTS,
                                  now=clock(), jti=MESSAGE_ID)
    refused = await http.post("/v1/messages", content=wire.seal_submission(replay, keys[BROKER].enc),
                              headers={"content-type": "application/jose", **auth("police")})
    problems["replay"] = refused.json()
    refused = await http.get("/v1/mailbox", headers={"authorization": f"Bearer {assertion}"})
    problems["unauthorized"] = refused.json()
    # a mistyped field name (masked, with a hint) and a cross-field rule, in one body
    mistyped = {k: v for k, v in BODY.items() if k != "offence_codes"} | {
        "offence_code": ["PH97021"],
        "orders": [{"kind": "restraining_order", "status": "breached", "status_date": "2026-11-20"}]}
    invalid = wire.compose_message(keys["police"], "cj_status_update", mistyped, case_id=CASE_ID,
                                   purpose="risk_management", subjects=SUBJECTS, now=clock(),
                                   jti=wire.new_id())
    problems["schema-invalid"] = (await submit(invalid, "police")).json()
    # nhs is no recorder of a victim's consent (P6.consent_recorder): refused whole
    forged = wire.compose_message(keys["nhs"], "consent_change", CONSENT_BODY, case_id=CASE_ID,
                                  purpose="case_management", subjects=[VICTIM], now=clock(),
                                  jti=wire.new_id(), consent_ref=CONSENT_REF)
    problems["policy-refused"] = (await submit(forged, "nhs")).json()
    out.json("problems.json", problems)

    # consent (P6): police record the victim's consent, then a message citing it reaches advocacy
    consent = wire.compose_message(keys["police"], "consent_change", CONSENT_BODY, case_id=CASE_ID,
                                   purpose="case_management", subjects=[VICTIM], now=clock(),
                                   jti=wire.new_id(), consent_ref=CONSENT_REF)
    out.json("consent-change.decoded.json", decode_sd_jwt(consent.serialize()))
    recorded = await submit(consent, "police")
    assert recorded.status_code == 202, recorded.text
    out.json("consent-change.receipt-response.json", recorded.json())
    citing = wire.compose_message(keys["police"], "cj_status_update", BODY, case_id=CASE_ID,
                                  purpose="risk_management", subjects=SUBJECTS, now=clock(),
                                  jti=wire.new_id(), consent_ref=CONSENT_REF)
    cited = await submit(citing, "police")
    assert cited.status_code == 202, cited.text
    out.json("consent-cited.receipt-response.json", cited.json())
    waiting = (await http.get("/v1/mailbox", headers=auth("advocacy"))).json()["deliveries"]
    jwe = (await http.get(f"/v1/mailbox/{waiting[-1]['delivery_id']}", headers=auth("advocacy"))).text
    token = json.loads(jose.decrypt(jwe, keys["advocacy"].decryption_keys(), wire.CTY_DELIVERY))["delivery"]
    out.json("delivery.advocacy.token.decoded.json", decode_jws(token))


# --- the markdown: example blocks hold the files' text ----------------------------------------

#: ``<!-- example: examples/x -->`` then a fenced block: the block's body is that file's text.
EXAMPLE_BLOCK = re.compile(r"(<!-- example: (?P<path>[^ ]+) -->\n```[a-z]*\n)(?P<body>.*?)(```)", re.S)
#: ``<!-- generated: examples/x -->`` ... ``<!-- end generated -->``: markdown included verbatim.
GENERATED_BLOCK = re.compile(r"(<!-- generated: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)",
                             re.S)


def render_docs(text: str, read: Callable[[str], str]) -> str:
    """``text`` (a spec page) with every example and generated block filled from ``read``."""
    text = EXAMPLE_BLOCK.sub(lambda m: m[1] + read(m["path"]) + m[4], text)
    return GENERATED_BLOCK.sub(lambda m: m[1] + read(m["path"]) + m[4], text)


def _read_beside(base: Path, rel: str) -> str:
    return (base / rel).read_text()


def fill_docs(spec: Path = SPEC) -> list[str]:
    """Rewrite the example blocks of every page of ``spec``; the pages changed."""
    changed = []
    for page in sorted(spec.glob("*.md")):
        text = page.read_text()
        new = render_docs(text, partial(_read_beside, page.parent))
        if new != text:
            page.write_text(new)
            changed.append(page.name)
    return changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keys", action="store_true", help="derive and write the fixed test keys first")
    args = parser.parse_args(argv)
    if args.keys:
        write_keys()
    files = asyncio.run(generate())
    print(f"wrote {len(files)} examples to {EXAMPLES.relative_to(REPO)}")
    for page in fill_docs():
        print(f"updated docs/spec/{page}")


if __name__ == "__main__":
    main()
