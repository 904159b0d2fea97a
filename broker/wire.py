"""The wire formats of docs/spec/, built and checked in one place.

Both sides use this module: adapters compose and seal messages, open deliveries and sign
acknowledgements; the broker opens submissions, seals deliveries and signs receipts. Each
``open_*`` function fails closed with a typed error naming what did not hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

import uuid6
from joserfc.jwk import OKPKey
from pydantic import ValidationError

from broker.crypto import jose, sdjwt
from broker.crypto.keys import BROKER, AgencyKeys, KeyId, KeyRegistry
from broker.errors import (
    MalformedMessage,
    MessageExpired,
    SignatureInvalid,
    UnknownKey,
    UnknownSender,
)
from schemas.envelope import Envelope

CTY_SUBMISSION = "masp+sd-jwt"
CTY_DELIVERY = "masp-delivery+json"
TYP_DELIVERY = "masp-delivery+jwt"
TYP_ACK = "masp-ack+jwt"
TYP_RECEIPT = "masp-receipt+jwt"
TYP_AUTH = "JWT"
MAX_LIFETIME = timedelta(hours=24)
#: Claims an agency message may carry in clear, besides ``_sd``, ``_sd_alg`` and ``subjects``.
_CLEAR_ENVELOPE = frozenset(Envelope.model_fields) - {"subjects", *sdjwt.SD_ENVELOPE}
#: Names an envelope error may mention: ours, never the sender's.
_ENVELOPE_NAMES = frozenset(Envelope.model_fields) | {"ref", "category"}


def new_id() -> str:
    """A UUIDv7 string: time-ordered, so ids sort the way messages arrived."""
    return str(uuid6.uuid7())


def epoch(at: datetime) -> int:
    return int(at.timestamp())


def from_epoch(seconds: int) -> datetime:
    """A NumericDate from the wire as a time; one no calendar can hold is malformed, not a crash."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedMessage("a NumericDate is out of range") from None


def _signer_lookup(registry: KeyRegistry, issuer: str | None = None,
                   at: datetime | None = None) -> jose.KeyLookup:
    """Kid -> the registered signing key, of ``issuer`` if given, usable at ``at`` (default
    now): a retired key still verifies what was signed before its overlap ended; a revoked one
    verifies nothing, whenever it was signed."""
    def lookup(kid: str) -> OKPKey:
        try:
            agency = KeyId.parse(kid).agency
        except UnknownKey:
            raise UnknownSender("signing key id names no registered agency") from None
        if not registry.knows(agency):
            raise UnknownSender("signing key names no registered agency")
        if issuer is not None and agency != issuer:
            # neither the kid nor the claimed issuer is repeated: both are the sender's words
            raise SignatureInvalid("the signing key does not belong to the claimed issuer")
        return registry.get(kid, use="sig", agency=agency, now=at)

    return lookup


# --- agency message (spec: message.md) and submission (submission.md) ------------------


def compose_message(keys: AgencyKeys, masp_type: str, body: dict[str, Any], *, case_id: str,
                    purpose: str, subjects: list[dict[str, str]], now: datetime,
                    ttl: timedelta = timedelta(hours=1), jti: str | None = None,
                    consent_ref: str | None = None, override: dict[str, Any] | None = None,
                    schema_version: str = "1", decoys: int = 2) -> sdjwt.SdJwt:
    """An agency message: clear claims, and every body field, every subject, the
    ``consent_ref`` and the ``override`` selectively disclosable (docs/spec/message.md)."""
    if ttl > MAX_LIFETIME:
        raise MalformedMessage("a message may live at most 24 hours")
    clear: dict[str, Any] = {
        "iss": keys.agency, "jti": jti or new_id(), "iat": epoch(now), "exp": epoch(now + ttl),
        "masp_type": masp_type, "masp_schema": schema_version, "case_id": case_id,
        "purpose": purpose,
    }
    envelope = {k: v for k, v in (("consent_ref", consent_ref), ("override", override)) if v is not None}
    return sdjwt.issue(clear, body, keys.sig, decoys=decoys, subjects=subjects, envelope=envelope)


def seal_submission(message: sdjwt.SdJwt, broker_enc: OKPKey) -> str:
    return jose.encrypt(message.serialize().encode("ascii"), broker_enc, CTY_SUBMISSION)


@dataclass(frozen=True)
class Submission:
    """A submission the broker has decrypted, whose sender signature verified and whose
    envelope matches its schema (``schemas.Envelope``)."""

    message: sdjwt.VerifiedSdJwt
    raw: str  # the SD-JWT exactly as submitted, for payload_digest
    envelope: Envelope

    @cached_property
    def claims(self) -> dict[str, Any]:
        """The envelope's claims, ``subjects`` and ``consent_ref`` taken from their
        disclosures (the body is ``message.claims``)."""
        return self.envelope.model_dump(mode="json", exclude_none=True)

    @property
    def sender(self) -> str:
        return self.envelope.iss

    @property
    def message_id(self) -> str:
        return self.envelope.jti


def decrypt_submission(token: str | bytes, broker_keys: dict[str, OKPKey], max_bytes: int) -> str:
    plaintext = jose.decrypt(token, broker_keys, CTY_SUBMISSION, max_bytes=max_bytes)
    try:
        return plaintext.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedMessage("SD-JWT must be ASCII") from None


def verify_submission(raw: str, registry: KeyRegistry, now: datetime,
                      max_skew: timedelta = timedelta(minutes=5)) -> Submission:
    """Verify the sender's signature, its right to the ``iss`` it claims, the envelope's
    schema and the times."""
    token = sdjwt.SdJwt.parse(raw)
    header = jose.peek_jws_header(token.jwt)
    kid = header.get("kid")
    claimed = _peek_iss(token.jwt)
    if not isinstance(kid, str):
        raise SignatureInvalid("message has no kid")
    verified = sdjwt.verify(token, _signer_lookup(registry, claimed))
    envelope = read_envelope(verified)
    _check_lifetime("message", envelope.iat, envelope.exp, now, max_skew, MAX_LIFETIME)
    return Submission(verified, raw, envelope)


def _check_lifetime(what: str, iat: int, exp: int, now: datetime, max_skew: timedelta,
                    longest: timedelta) -> None:
    """Issued no later than ``now + max_skew``, not expired at ``now``, living at most ``longest``."""
    issued, expires = from_epoch(iat), from_epoch(exp)
    if issued > now + max_skew:
        raise MessageExpired(f"{what} is issued in the future")
    if expires <= now:
        raise MessageExpired(f"{what} has expired")
    if expires - issued > longest:
        raise MessageExpired(f"{what} lifetime exceeds {longest.total_seconds() / 3600:g} hours")


def read_envelope(message: sdjwt.VerifiedSdJwt) -> Envelope:
    """The envelope of a verified message, checked against its schema.

    The clear claims must be exactly the envelope's (``consent_ref`` and ``override`` only
    as disclosures, never in clear), and every claim must match its pattern. The error names the claim and
    what is wrong with it, never the value, and never a claim name the sender made up.
    """
    clear = {k: v for k, v in message.payload.items() if k not in ("_sd", "_sd_alg", "subjects")}
    unknown = set(clear) - _CLEAR_ENVELOPE
    if unknown:
        raise MalformedMessage("the envelope has a claim that is not in its schema "
                               "(consent_ref and override travel only as disclosures)")
    claims: dict[str, Any] = {**clear, "subjects": [d.value for d in message.subjects]}
    for name, disclosure in message.envelope.items():
        claims[name] = disclosure.value
    try:
        return Envelope.model_validate(claims)
    except ValidationError as exc:
        problem = _envelope_problem(exc)
    raise problem  # outside the handler: pydantic's error holds the submitted values


def _envelope_problem(exc: ValidationError) -> MalformedMessage:
    first = exc.errors(include_input=False, include_url=False, include_context=False)[0]
    where = ".".join(str(p) if isinstance(p, int) or p in _ENVELOPE_NAMES else "?"
                     for p in first["loc"])
    return MalformedMessage(f"envelope claim {where or '?'} is not valid ({first['type']})",
                            claim=where.split(".", 1)[0])


def _sealed_at(token: str) -> datetime | None:
    """The ``iat`` a signed token claims, before it is verified (None if it has none): only the
    time at which the signing key's retirement is judged, never trusted for anything else, and
    no later than now (a token from the future cannot extend a key's life)."""
    payload = jose.loads_json(jose.b64url_decode(jose.compact_segments(token, 3)[1]), "signed payload")
    iat = payload.get("iat") if isinstance(payload, dict) else None
    if type(iat) is not int:
        return None
    return min(from_epoch(iat), datetime.now(UTC))


def _peek_iss(jwt: str) -> str:
    segments = jwt.split(".")
    if len(segments) != 3:
        raise MalformedMessage("message is not a compact JWS")
    payload = jose.loads_json(jose.b64url_decode(segments[1]), "message payload")
    iss = payload.get("iss") if isinstance(payload, dict) else None
    if not isinstance(iss, str):
        raise MalformedMessage("message has no iss")
    return iss


# --- delivery (docs/spec/delivery.md) ---------------------------------------------------


def seal_delivery(presentation: sdjwt.SdJwt, token: str, recipient_enc: OKPKey) -> str:
    body = {"sd_jwt": presentation.serialize(), "delivery": token}
    return jose.encrypt(json.dumps(body, separators=(",", ":")).encode(), recipient_enc, CTY_DELIVERY)


def sign_delivery_token(broker: AgencyKeys, payload: dict[str, Any], alg: str = jose.SIG_ALG) -> str:
    return jose.sign({"iss": BROKER, **payload}, broker.sig, TYP_DELIVERY, alg)


@dataclass(frozen=True)
class Delivery:
    token: dict[str, Any]
    message: sdjwt.VerifiedSdJwt

    @property
    def delivery_id(self) -> str:
        return str(self.token["jti"])

    @property
    def message_id(self) -> str:
        return str(self.token["message_id"])


def open_delivery(jwe: str | bytes, me: AgencyKeys, registry: KeyRegistry) -> Delivery:
    """Everything a recipient must check before its application sees a delivery (docs/spec/delivery.md)."""
    plaintext = jose.decrypt(jwe, me.decryption_keys(), CTY_DELIVERY)
    body = jose.loads_json(plaintext, "delivery")
    try:
        sd_raw, token = body["sd_jwt"], body["delivery"]
    except (KeyError, TypeError):
        raise MalformedMessage("delivery is not {sd_jwt, delivery}") from None
    if not isinstance(sd_raw, str) or not isinstance(token, str):
        raise MalformedMessage("delivery members must be strings")
    # A delivery may wait in a queue for as long as it lives: the keys are judged as they stood
    # when the broker sealed it (the token's iat), so a rotation's overlap ending meanwhile
    # does not turn an honest delivery into a dead letter. Revocation still refuses at once.
    sealed_at = _sealed_at(token)
    _, claims = jose.verify(token, _signer_lookup(registry, BROKER, sealed_at), TYP_DELIVERY)
    if claims.get("aud") != me.agency:
        raise SignatureInvalid("delivery is addressed to another agency")
    sender = claims.get("sender")
    message = sdjwt.verify(sd_raw, _signer_lookup(registry, str(sender), sealed_at))
    if message.payload.get("iss") != sender or message.payload.get("jti") != claims.get("message_id"):
        raise SignatureInvalid("delivery token does not describe this message")
    if message.payload.get("masp_type") != claims.get("masp_type"):
        raise SignatureInvalid("delivery token names another message type")
    if message.payload.get("purpose") != claims.get("purpose"):
        raise SignatureInvalid("delivery token names another purpose")
    received = sorted(d.digest for d in message.disclosures)
    listed = claims.get("disclosed")
    if not isinstance(listed, list) or sorted(listed) != received:
        raise SignatureInvalid("disclosures received differ from those the broker lists")
    return Delivery(claims, message)


# --- acknowledgement, receipt, agency authentication (docs/spec/) -----------------------


#: An acknowledgement may be read long after it was signed (it waits in ``masp.acks`` while
#: the broker is down), but no longer than an unacknowledged delivery lives.
MAX_ACK_LIFETIME = timedelta(hours=24)


def sign_ack(me: AgencyKeys, delivery: Delivery | dict[str, str], now: datetime,
             status: Literal["accepted", "rejected"] = "accepted", reason: str | None = None,
             ttl: timedelta = MAX_ACK_LIFETIME) -> str:
    ids = (delivery if isinstance(delivery, dict)
           else {"delivery_id": delivery.delivery_id, "message_id": delivery.message_id})
    payload: dict[str, Any] = {"iss": me.agency, "aud": BROKER, "delivery_id": ids["delivery_id"],
                               "message_id": ids["message_id"], "status": status, "iat": epoch(now),
                               "exp": epoch(now + ttl), "jti": new_id()}
    if reason:
        payload["reason"] = reason
    return jose.sign(payload, me.sig, TYP_ACK)


def verify_ack(token: str, registry: KeyRegistry, now: datetime,
               max_skew: timedelta = timedelta(minutes=5)) -> dict[str, Any]:
    """A recipient's signed acknowledgement (docs/spec/acknowledgement.md): its signer, the
    delivery it names, and its times. Refusals name the claim, never its value."""
    header = jose.peek_jws_header(token)
    kid = header.get("kid")
    agency = KeyId.parse(kid).agency if isinstance(kid, str) else None
    _, payload = jose.verify(token, _signer_lookup(registry, agency), TYP_ACK)
    if payload.get("iss") != agency or payload.get("aud") != BROKER:
        raise SignatureInvalid("acknowledgement iss/aud do not match its key")
    if payload.get("status") not in ("accepted", "rejected"):
        raise MalformedMessage("acknowledgement status must be accepted or rejected", claim="status")
    for claim in ("delivery_id", "message_id"):  # named, never echoed
        value = payload.get(claim)
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            raise MalformedMessage(f"acknowledgement claim {claim} must be the delivery's identifier",
                                   claim=claim)
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 64:
        raise MalformedMessage("acknowledgement claim jti must be a string of 1 to 64 characters",
                               claim="jti")
    for claim in ("iat", "exp"):
        if type(payload.get(claim)) is not int:
            raise MalformedMessage(f"acknowledgement claim {claim} must be a NumericDate (integer "
                                   "seconds)", claim=claim)
    _check_lifetime("acknowledgement", payload["iat"], payload["exp"], now, max_skew, MAX_ACK_LIFETIME)
    return payload


def sign_receipt(broker: AgencyKeys, payload: dict[str, Any], alg: str = jose.SIG_ALG) -> str:
    return jose.sign(payload, broker.sig, TYP_RECEIPT, alg)


def sign_agency_auth(me: AgencyKeys, now: datetime, ttl: timedelta = timedelta(seconds=60)) -> str:
    """Short-lived client assertion (RFC 7523 style) an agency presents as a bearer token."""
    payload = {"iss": me.agency, "sub": me.agency, "aud": BROKER, "jti": new_id(),
               "iat": epoch(now), "exp": epoch(now + ttl)}
    return jose.sign(payload, me.sig, TYP_AUTH)


def verify_agency_auth(token: str, registry: KeyRegistry, now: datetime,
                       max_age: timedelta) -> dict[str, Any]:
    header = jose.peek_jws_header(token)
    kid = header.get("kid")
    agency = KeyId.parse(kid).agency if isinstance(kid, str) else None
    if agency == BROKER:
        raise UnknownSender("the broker's key does not authenticate agencies")
    _, p = jose.verify(token, _signer_lookup(registry, agency), TYP_AUTH)
    if p.get("iss") != agency or p.get("sub") != agency or p.get("aud") != BROKER:
        raise SignatureInvalid("assertion iss and sub must name the signing key's agency, "
                               "and aud must be the string \"broker\"")
    if not isinstance(p.get("jti"), str) or type(p.get("exp")) is not int or type(p.get("iat")) is not int:
        raise MalformedMessage("assertion needs jti, iat and exp")
    iat, exp = from_epoch(p["iat"]), from_epoch(p["exp"])
    if exp <= now or iat > now + timedelta(seconds=30) or exp - iat > max_age:
        raise MessageExpired("assertion expired, not yet valid, or too long-lived")
    return p
