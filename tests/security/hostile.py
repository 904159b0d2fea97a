"""A partner whose own system is compromised: its toolkit, and the black-box checks run on it.

The attacker holds one agency's keys and nothing else. It can sign and seal whatever it
likes as that agency, so ``forge`` builds SD-JWTs an honest adapter never would: free text
in clear claims, unknown claims, unsigned disclosures, a digest listed twice, characters
outside the base64url alphabet. Everything the suite asserts about the outcome is checked
from the outside: what each recipient can decrypt with its own keys, what the audit log's
leaves hold, which rows of the broker's working state changed.

WIRE — the places that know today's wire layout (docs/spec/) are marked ``WIRE:``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc.jwk import OKPKey
from sqlalchemy import MetaData, func, select
from sqlalchemy.engine import Connection
from sqlmodel import col

from broker import wire
from broker.audit.entry import pseudonym
from broker.crypto import jose, sdjwt
from broker.crypto.keys import BROKER, AgencyKeys
from broker.errors import MaspError
from broker.store.delivery_models import DeadLetterRow
from broker.store.models import AuditRow, DeliveryRow
from schemas import NEVER_TO_NHS, data_classes
from tests.integration.conftest import Env
from tests.security import jose_forge

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "tests" / "assets" / "messages"
AGENCY_IDS = ("police", "probation", "nhs", "advocacy")


class QuietEnv(Env):
    """The same whole broker with a short repr: hypothesis prints a failing example's arguments,
    and the full repr of every key, session and client runs to tens of kilobytes."""

    def __repr__(self) -> str:
        return "<env>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's own printer
        printer.text("<env>")

    @classmethod
    def of(cls, env: Env) -> QuietEnv:
        return cls(**{f.name: getattr(env, f.name) for f in fields(env)})


# --- the fixed design's envelope, as the suite expects the broker to enforce it ----------

CODE = re.compile(r"^[A-Z0-9]+(-[A-Z0-9]+)*$")
PURPOSE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
SUBJECT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{1,63}$")
SUBJECT_CATEGORIES = frozenset({"suspect", "convicted", "victim", "witness", "child", "other"})
#: Who the DSA names as recorders of each kind of consent.
CONSENT_RECORDERS = {"victim": frozenset({"police", "advocacy"}),
                     "intervention": frozenset({"police", "probation", "nhs"})}
#: consent_change body member per kind of consent.
CONSENT_MEMBER = {"victim": "victim_consent", "intervention": "intervention_consent"}
#: What the fixed envelope defines (in clear or, later, disclosed); anything else is refused.
ENVELOPE = frozenset({"iss", "jti", "iat", "exp", "masp_type", "masp_schema", "case_id", "purpose",
                      "subjects", "consent_ref", "override"})


def code_ok(value: object, max_len: int) -> bool:
    return (isinstance(value, str) and len(value) <= max_len and CODE.match(value) is not None
            and any(c.isdigit() for c in value))


def subjects_ok(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(s, dict) and set(s) == {"ref", "category"}
        and isinstance(s["ref"], str) and SUBJECT_REF.match(s["ref"]) is not None
        and isinstance(s["category"], str) and s["category"] in SUBJECT_CATEGORIES for s in value)


# --- marker strings: sender-chosen text that must never be recorded or echoed --------------


def marker(tag: str) -> str:
    """Free text a hostile sender slips in; ``tag`` makes it findable wherever it lands."""
    return f"Jane Smith, 14 Larkspur Road {tag}"


def new_tag() -> str:
    return "zq" + secrets.token_hex(5)


# --- the victim: what must never reach nhs -------------------------------------------------


@dataclass(frozen=True)
class Victim:
    """One victim's identifiers and whereabouts, every value distinctive (tagged or random)."""

    ref: str
    tag: str
    postcode: str
    phone: str
    times: tuple[str, str]
    review_date: str

    @classmethod
    def make(cls, tag: str, n: int) -> Victim:
        r = secrets.randbelow
        letters = "ABDEFGHJLNPQRSTUWXYZ"
        postcode = f"SO{r(8) + 1}{r(10)} {r(10)}{letters[r(20)]}{letters[r(20)]}"  # never the examples' SO99
        return cls(ref=f"VIC/{tag.upper()}/{n:04d}", tag=tag, postcode=postcode,
                   phone=f"07911 {r(10**6):06d}", times=(f"11:{r(60):02d}:{r(60):02d}",
                                                          f"15:{r(60):02d}:{r(60):02d}"),
                   review_date=f"20{31 + r(5)}-0{r(9) + 1}-1{r(9) + 1}")

    @property
    def address_line(self) -> str:
        return f"14 Larkspur Road {self.tag}"

    @property
    def email(self) -> str:
        return f"v.{self.tag}@example.org"

    def subject(self) -> dict[str, str]:
        return {"ref": self.ref, "category": "victim"}

    def location_fields(self) -> dict[str, Any]:
        """victim_location and victim_safety_plan values, by field name (every message type's)."""
        address = {"lines": [self.address_line, f"Shirley {self.tag}"], "town": f"Southampton {self.tag}",
                   "postcode": self.postcode}
        return {
            "victim_address": address,
            "victim_phone": self.phone,
            "victim_email": self.email,
            "victim_workplace": {"employer": f"Shirley Library {self.tag}",
                                 "working_pattern": f"Mon-Thu days {self.tag}"},
            "victim_safe_contact_times": [{"days": ["mon", "wed"], "start": self.times[0],
                                           "end": self.times[1], "methods": ["phone_call"],
                                           "note": f"Do not leave voicemail {self.tag}"}],
            "exclusion_zones": [{"description": f"Not to enter Larkspur Road {self.tag}",
                                 "imposed_by": "bail", "reference": f"EZ {self.tag}"}],
            "safety_measures": [{"kind": "target_hardening", "status": "in_place",
                                 "detail": f"Door chain at the new flat {self.tag}"}],
            "safety_plan_review_date": self.review_date,
        }

    def identifiers(self, secret: bytes) -> set[str]:
        """Her reference in every spelling, and the broker's audit pseudonym of it."""
        return set(ref_variants(self.ref)) | {pseudonym(secret, self.ref)}

    def locations(self) -> set[str]:
        """Every victim_location and victim_safety_plan value that may have been submitted."""
        return {s for value in self.location_fields().values() for s in distinctive(value)}

    def needles(self, secret: bytes) -> set[str]:
        """Everything of this victim nhs must never see."""
        return self.identifiers(secret) | self.locations()


def ref_variants(ref: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((ref, ref.upper(), ref.lower(), ref.replace("/", "-"),
                                ref.replace("/", "-").lower())))


def distinctive(value: Any) -> Iterator[str]:
    """String leaves of ``value`` that could not turn up by chance: not a bare code word."""
    if isinstance(value, str):
        if len(value) >= 6 and not re.fullmatch(r"[a-z_]+", value):
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from distinctive(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from distinctive(v)


def example_body(masp_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{masp_type}.json").read_text("utf-8"))
    return data


def body_for(masp_type: str, victim: Victim, **changes: Any) -> dict[str, Any]:
    """The catalogue example of ``masp_type`` with this victim's whereabouts wherever the type
    carries victim_location or victim_safety_plan."""
    body = {**example_body(masp_type), **changes}
    classes = data_classes(masp_type)
    if masp_type == "correction_notice":  # only fields of the type it corrects
        classes = {n: c for n, c in classes.items() if n in data_classes(str(body["corrects_masp_type"]))}
    for name, value in victim.location_fields().items():
        if classes.get(name) in NEVER_TO_NHS and name not in changes:
            body[name] = value
    return body


def consent_body(kind: str, status: str, *, recipients: list[str], purposes: list[str],
                 message_types: list[str] | None = None, effective: str = "2026-01-05") -> dict[str, Any]:
    decision: dict[str, Any] = {
        "status": status, "effective_date": effective, "given_by": "subject",
        "scope": {"purposes": purposes, "recipients": recipients,
                  **({"message_types": message_types} if message_types else {})}}
    if status == "withdrawn":
        decision["withdrawal_reason"] = "subject_request"
    return {CONSENT_MEMBER[kind]: decision}


# --- the forger ----------------------------------------------------------------------------
#
# ONE builder for everything the suite submits outside an adapter. It sits on the product's
# own primitives (``sdjwt.issue``, ``wire.seal_submission``) so it follows the wire as the
# wire changes; only the tampering that ``issue`` refuses to do (a digest listed twice, text
# outside base64url) signs raw (cf. tests/security/jose_forge.py).


@dataclass
class Envelope:
    """The non-body part of a message. Any member may hold any JSON value (that is the point);
    ``extra`` adds clear claims the envelope does not define."""

    case_id: Any = "HIOW-MASP-2026-0147"
    purpose: Any = "risk_management"
    subjects: Any = field(default_factory=list)
    consent_ref: Any = None
    override: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def members(self) -> dict[str, Any]:
        """The envelope members docs/spec/message.md defines, as set (absent when None)."""
        out = {"case_id": self.case_id, "purpose": self.purpose, "subjects": self.subjects}
        if self.consent_ref is not None:
            out["consent_ref"] = self.consent_ref
        if self.override is not None:
            out["override"] = self.override
        return out

    def claims(self) -> dict[str, Any]:
        """Everything the sender puts beside the body: the members and the extra claims."""
        return {**self.members(), **self.extra}


@dataclass
class Tamper:
    """What to break in the SD-JWT itself (RFC 9901 strictness)."""

    #: (name, value) disclosures appended to the token whose digests the issuer never signed
    unsigned: list[tuple[str, Any]] = field(default_factory=list)
    #: list the first disclosure's digest twice in the signed ``_sd``
    duplicate_digest: bool = False
    #: characters outside the base64url alphabet inserted into the first disclosure (signed:
    #: its digest is computed over the altered text, so only a strict decoder notices)
    junk_in_disclosure: str | None = None
    #: the same, inserted into the issuer JWT's payload segment (signed over the altered text)
    junk_in_jwt_payload: str | None = None

    @property
    def raw(self) -> bool:
        """Needs signing by hand: ``sdjwt.issue`` would not build it."""
        return self.duplicate_digest or self.junk_in_disclosure is not None \
            or self.junk_in_jwt_payload is not None


@dataclass(frozen=True)
class Forged:
    jti: str
    sd_jwt: str  # what the broker decrypts
    jwe: str  # what is submitted

    def digests(self) -> set[str]:
        """Every digest a refusal entry may cite for this submission."""
        out = set()
        for raw in (self.jwe, self.sd_jwt):
            hexed = hashlib.sha256(raw.encode("ascii")).hexdigest()
            out |= {f"sha-256:{hexed}", hexed}
        return out


def _place_envelope(members: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """WIRE: which envelope members travel in clear and which as disclosures.

    ``case_id`` and ``purpose`` travel in clear; ``consent_ref`` and ``override`` as
    object-property disclosures; each entry of ``subjects`` as an array-element disclosure
    (whatever it holds: a malformed subject is the broker's to refuse). Returns (clear,
    property disclosures, subject elements). Extra claims (``Envelope.extra``) stay in
    clear: they are what a strict envelope must refuse.
    """
    clear = {k: v for k, v in members.items() if k in ("case_id", "purpose")}
    props = {k: v for k, v in members.items() if k in sdjwt.SD_ENVELOPE}
    subjects = members.get("subjects", [])
    return clear, props, list(subjects) if isinstance(subjects, list) else [subjects]


def forge(keys: AgencyKeys, broker_enc: OKPKey, masp_type: str, body: Mapping[str, Any],
          envelope: Envelope, *, now: datetime, tamper: Tamper | None = None,
          ttl: timedelta = timedelta(hours=1), decoys: int = 2) -> Forged:
    """An SD-JWT signed with ``keys`` (the attacker's own, real keys) and sealed to the broker.

    With a well-formed ``Envelope`` and no ``tamper`` this is what an honest adapter sends
    (``wire.compose_message``): the control test checks the broker accepts it.
    """
    tamper = tamper or Tamper()
    jti = wire.new_id()
    clear_members, props, subjects = _place_envelope(envelope.members())
    clear = {"iss": keys.agency, "jti": jti, "iat": wire.epoch(now), "exp": wire.epoch(now + ttl),
             "masp_type": masp_type, "masp_schema": "1", **clear_members, **envelope.extra}
    if tamper.raw:
        jwt, disclosures = _issue_by_hand(clear, {**props, **body}, subjects, keys, tamper, decoys)
    else:
        issued = sdjwt.issue(clear, body, keys.sig, decoys=decoys, subjects=subjects, envelope=props)
        jwt, disclosures = issued.jwt, list(issued.disclosures)
    disclosures += [sdjwt.Disclosure.create(n, v) for n, v in tamper.unsigned]
    message = sdjwt.SdJwt(jwt, tuple(disclosures))
    return Forged(jti, message.serialize(), wire.seal_submission(message, broker_enc))


def _issue_by_hand(clear: Mapping[str, Any], fields_: Mapping[str, Any], subjects: list[Any],
                   keys: AgencyKeys, tamper: Tamper, decoys: int) -> tuple[str, list[sdjwt.Disclosure]]:
    """``sdjwt.issue`` with the tampering it refuses to do."""
    disclosures = [sdjwt.Disclosure.create(n, v) for n, v in fields_.items()]
    elements = [sdjwt.Disclosure.element(v) for v in subjects]
    if tamper.junk_in_disclosure is not None and disclosures:
        first = disclosures[0]
        cut = len(first.encoded) // 2
        encoded = first.encoded[:cut] + tamper.junk_in_disclosure + first.encoded[cut:]
        disclosures[0] = sdjwt.Disclosure(first.salt, first.name, first.value, encoded)
    digests = [d.digest for d in disclosures]
    if tamper.duplicate_digest and digests:
        digests.append(digests[0])
    digests += [sdjwt.digest_of(jose.b64url_encode(secrets.token_bytes(32))) for _ in range(decoys)]
    payload = {**clear, "subjects": [{"...": e.digest} for e in elements],
               "_sd_alg": sdjwt.SD_ALG, "_sd": sorted(digests)}
    disclosures += elements
    private = keys.sig.private_key
    assert isinstance(private, Ed25519PrivateKey)
    header = {"alg": jose.SIG_ALG, "kid": keys.sig.kid, "typ": sdjwt.TYP}
    if tamper.junk_in_jwt_payload is None:
        return jose_forge.forge_jws(payload, jose_forge.ed25519_signer(private), header=header), disclosures
    protected = jose.b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    segment = jose.b64url_encode(jose.canonical_json(payload))
    segment = segment[: len(segment) // 2] + tamper.junk_in_jwt_payload + segment[len(segment) // 2:]
    signature = jose.b64url_encode(private.sign(f"{protected}.{segment}".encode("ascii")))
    return f"{protected}.{segment}.{signature}", disclosures


# --- submitting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the submitter was told. WIRE: a 202 body is ``{receipt, message_id, audit_seq,
    decisions: [{recipient, decision, clause}]}``; a refusal an RFC 9457 problem document."""

    status: int
    doc: dict[str, Any]
    text: str

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def decisions(self) -> dict[str, str]:
        return {d["recipient"]: d["decision"] for d in self.doc.get("decisions", [])} if self.accepted else {}

    @property
    def delivered_to(self) -> set[str]:
        return {r for r, d in self.decisions.items() if d.startswith("permit")}

    def brief(self) -> str:
        """Status and problem code, or the decisions: enough to say what happened."""
        if self.accepted:
            return f"202 {self.decisions}"
        return f"{self.status} {self.doc.get('code')}: {self.doc.get('detail')}"

    @property
    def refused(self) -> bool:
        """Nothing of it may go anywhere: refused at ingress, or every recipient denied."""
        return not self.accepted or (bool(self.decisions) and not self.delivered_to)


async def submit(env: Env, agency: str, jwe: str, via: str = "http") -> Outcome:
    """Submit as ``agency`` (with its own credentials) over HTTP or AMQP.

    WIRE: the AMQP reply is the receipt JSON or the problem document (with ``status``)."""
    rt = env.adapters[agency]
    if via == "amqp":
        doc = await rt.submit_amqp(env.connection, jwe)
        status = int(doc["status"]) if "type" in doc and "status" in doc else 202
        return Outcome(status, doc, json.dumps(doc))
    resp = await rt.submit_http(env.http, jwe)
    try:
        doc = resp.json()
    except ValueError:  # not JSON at all (a bare JWS receipt, a crash page): judged by status
        doc = {}
    return Outcome(resp.status_code, doc if isinstance(doc, dict) else {}, resp.text)


def forge_as(env: Env, agency: str, masp_type: str, body: Mapping[str, Any], envelope: Envelope,
             tamper: Tamper | None = None) -> Forged:
    return forge(env.keys[agency], env.registry.current(BROKER, "enc"), masp_type, body, envelope,
                 now=env.service.exchange.clock(), tamper=tamper)


def honest(env: Env, agency: str, masp_type: str, body: Mapping[str, Any], *, case_id: str,
           purpose: str, subjects: list[dict[str, str]], consent_ref: str | None = None,
           override: dict[str, Any] | None = None) -> Forged:
    """What the agency's own adapter would send (whatever the wire is at the time).

    WIRE: ``AdapterRuntime.compose``'s keyword arguments."""
    message, jwe = env.adapters[agency].compose(masp_type, dict(body), case_id=case_id, purpose=purpose,
                                                subjects=subjects, consent_ref=consent_ref,
                                                override=override)
    return Forged(_jti_of(message.jwt), message.serialize(), jwe)


def _jti_of(jwt: str) -> str:
    """WIRE: the message id is the issuer JWT's clear ``jti``."""
    payload = json.loads(jose.b64url_decode(jwt.split(".")[1]))
    return str(payload["jti"])


# --- the broker's state, seen from outside ----------------------------------------------

#: Working state a refused message must not touch (matched on table names, so new tables of
#: the same things are covered): consent records, deliveries and their outbox, override
#: reviews, safeguarding timers and notices, dead letters, paused routes.
STATE_TABLES = ("consent", "deliver", "override", "timer", "escalat", "notice", "dead_letter", "route")


async def quiesce(env: Env, timeout: float = 20.0) -> None:
    """Wait until every delivery is out of the outbox and settled (no ack still to come)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with env.service.exchange.sessions() as s:
            busy = (await s.execute(select(func.count()).select_from(DeliveryRow).where(
                col(DeliveryRow.state).in_(["queued", "published"])))).scalar_one()
        if not busy or loop.time() > deadline:
            return
        await asyncio.sleep(0.05)


async def snapshot(env: Env) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every working-state table (audit tables excluded), as sorted text tuples."""

    def read(conn: Connection) -> dict[str, list[tuple[str, ...]]]:
        meta = MetaData()
        meta.reflect(bind=conn)
        out: dict[str, list[tuple[str, ...]]] = {}
        for name, table in sorted(meta.tables.items()):
            if name.startswith("audit") or not any(k in name for k in STATE_TABLES):
                continue
            rows = conn.execute(select(table)).all()
            out[name] = sorted(tuple(str(v) for v in row) for row in rows)
        return out

    async with env.service.engine.connect() as conn:
        return await conn.run_sync(read)


def state_diff(before: Mapping[str, list[tuple[str, ...]]],
               after: Mapping[str, list[tuple[str, ...]]]) -> dict[str, int]:
    """Tables whose rows differ, with how many rows were added or removed."""
    changed = {}
    for name in sorted(set(before) | set(after)):
        b, a = set(before.get(name, [])), set(after.get(name, []))
        if a != b:
            changed[name] = len(a ^ b)
    return changed


async def audit_head(env: Env) -> int:
    async with env.service.exchange.sessions() as s:
        found = (await s.execute(select(func.max(col(AuditRow.seq))))).scalar_one()
    return -1 if found is None else int(found)


async def leaves(env: Env, after: int = -1) -> list[dict[str, Any]]:
    """The audit leaves after ``after``, parsed as plain JSON (not through the entry model, so
    members added later are read too); each also keeps its exact text as ``_text``."""
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(col(AuditRow.seq), col(AuditRow.leaf))
                                .where(col(AuditRow.seq) > after).order_by(col(AuditRow.seq)))).all()
    out = []
    for _, leaf in rows:
        doc = json.loads(leaf)
        doc["_text"] = bytes(leaf).decode("utf-8")
        out.append(doc)
    return out


def leaves_holding(docs: Iterable[dict[str, Any]], needle: str) -> list[int]:
    low = needle.lower()
    return [int(d.get("seq", -1)) for d in docs if low in str(d["_text"]).lower()]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


async def refusal_entries(env: Env, after: int, forged: Forged, *,
                          timeout: float = 5.0) -> list[dict[str, Any]]:
    """Refused entries that account for ``forged``: one citing its payload digest (alone, or in
    the digests of a window's summary of repeated refusals) or its message id. A repeat of an
    earlier refusal's kind is only counted until its window closes (broker/refusals.py): the
    windows are closed first, so the summary that holds it is on record to be found."""
    await env.service.exchange.refusals.flush(everything=True)
    digests = forged.digests()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [d for d in await leaves(env, after) if d.get("kind") == "refused"
                 and (digests.intersection(_strings({k: v for k, v in d.items() if k != "_text"}))
                      or d.get("message_id") == forged.jti)]
        if found or loop.time() > deadline:
            return found
        await asyncio.sleep(0.1)


async def delivery_rows(env: Env, message_id: str) -> list[DeliveryRow]:
    async with env.service.exchange.sessions() as s:
        return list((await s.execute(select(DeliveryRow).where(
            col(DeliveryRow.message_id) == message_id))).scalars().all())


# --- what a recipient received, opened with its own keys ---------------------------------


def expand(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in ``value``, and inside each string every base64url segment of a compact
    JOSE object or SD-JWT (``.`` and ``~`` separated) decoded, and any JSON in it, recursively."""
    if depth > 6:
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from expand(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from expand(v, depth + 1)
    elif isinstance(value, str):
        yield value
        for piece in re.split(r"[.~]", value):
            decoded = _b64(piece)
            if decoded is None:
                continue
            yield decoded
            try:
                parsed = json.loads(decoded)
            except ValueError:
                continue
            yield from expand(parsed, depth + 1)
    elif value is not None:
        yield json.dumps(value)


def _b64(piece: str) -> str | None:
    if len(piece) < 4 or not re.fullmatch(r"[A-Za-z0-9_-]+", piece):
        return None
    try:
        raw = base64.urlsafe_b64decode(piece + "=" * (-len(piece) % 4))
        return raw.decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def received_ciphertexts(env: Env, agency: str) -> list[bytes]:
    """Every delivery that reached ``agency``: the exact bytes its adapter kept
    (``<home>/deliveries/<id>.jwe``); ciphertexts still in the outbox are added by the caller."""
    folder = env.adapters[agency].home / "deliveries"
    return [p.read_bytes() for p in sorted(folder.glob("*.jwe"))] if folder.exists() else []


async def corpus(env: Env, agency: str) -> str:
    """Everything ``agency`` could read of what was sent to it, as one lower-cased text.

    Opened black-box with the recipient's own decryption keys: the delivery JSON, the issuer
    JWT (header, payload), every disclosure, the broker's delivery token, decoded recursively.
    Includes ciphertexts it kept, those still in the outbox and dead letters addressed to it.
    WIRE: only that a delivery is a JWE of a JSON document with content type
    ``wire.CTY_DELIVERY``; its members are searched whatever they are.
    """
    blobs = received_ciphertexts(env, agency)
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(DeliveryRow).where(col(DeliveryRow.recipient) == agency))).scalars()
        blobs += [r.jwe.encode("ascii") for r in rows if r.jwe]
        dead = (await s.execute(select(DeadLetterRow).where(
            col(DeadLetterRow.recipient) == agency))).scalars()
        blobs += [bytes(d.body) for d in dead if d.body]
    keys = env.keys[agency].decryption_keys()
    texts: list[str] = []
    for blob in blobs:
        try:
            plaintext = jose.decrypt(blob, keys, wire.CTY_DELIVERY)
        except MaspError:
            texts.append(blob.decode("latin-1"))  # not a delivery it can open: search it as it is
            continue
        texts.extend(expand(json.loads(plaintext)))
    return "\n".join(texts).lower()


def found_in(text: str, needles: Iterable[str]) -> list[str]:
    return sorted(n for n in needles if n.lower() in text)
