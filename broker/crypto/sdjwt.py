"""SD-JWT (RFC 9901) as MASP Exchange uses it: top-level claims and the ``subjects`` array.

Every body field of a canonical message is one object-property disclosure
``[salt, name, value]`` listed in the top-level ``_sd``; so are the envelope's
``consent_ref`` and ``override``. Each entry of the envelope's ``subjects`` array is an array-element
disclosure ``[salt, {"ref": ..., "category": ...}]`` whose digest stands in the array as
``{"...": digest}``; the ``override`` block is a disclosure too. The issuer-signed JWT
carries only digests of all of these. The broker
forwards, per recipient, the unchanged JWT plus the disclosures the DSA allows, so each
recipient verifies the sending agency's own signature over exactly what it received, and a
subject's reference or the consent reference reaches only the recipients entitled to it.
No key binding: ``~`` ends the token.

The verifier is strict where RFC 9901 §7.1 says to reject: a digest that appears more
than once anywhere in the payload, a disclosure whose digest is not in the payload, a
disclosure used twice, an object-property disclosure in an array slot or the reverse, a
disclosure naming a claim that travels in clear. Nothing in an error repeats what the
sender wrote (claim names in disclosures are the sender's).

No maintained Python SD-JWT library sits on joserfc with the RFC 9901 final text and
Ed25519, and the subset needed here is small, so it is written out and tested against the
RFC's own examples and an independent implementation.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey

from broker.crypto import jose
from broker.errors import DisclosureMismatch, MalformedMessage

TYP = "masp+sd-jwt"
SD_ALG = "sha-256"
#: The one array whose elements are selectively disclosable.
SD_ARRAY = "subjects"
#: Envelope claims that travel as object-property disclosures, never in clear: the consent
#: reference goes only to recipients that need it, the override block to none (recipients
#: learn of an override from the broker's token, in codes).
SD_ENVELOPE = frozenset({"consent_ref", "override"})
#: Claims that travel in clear inside the JWT; a body disclosure may never shadow one.
CLEAR_CLAIMS = frozenset({
    "iss", "jti", "iat", "exp", "nbf", "masp_type", "masp_schema", "case_id", "purpose",
    "subjects", "consent_ref", "override", "_sd", "_sd_alg", "cnf", "...",
})
SALT_BYTES = 16  # 128 bits, the RFC's recommended minimum


@dataclass(frozen=True)
class Disclosure:
    """One disclosure. ``name`` is None for an array element (``[salt, value]``)."""

    salt: str
    name: str | None
    value: Any
    encoded: str

    @property
    def digest(self) -> str:
        return digest_of(self.encoded)

    @property
    def is_element(self) -> bool:
        return self.name is None

    @classmethod
    def create(cls, name: str, value: Any) -> Disclosure:
        return cls._make([_salt(), name, value], name, value)

    @classmethod
    def element(cls, value: Any) -> Disclosure:
        return cls._make([_salt(), value], None, value)

    @classmethod
    def _make(cls, arr: list[Any], name: str | None, value: Any) -> Disclosure:
        raw = json.dumps(arr, ensure_ascii=False, separators=(",", ":"))
        return cls(arr[0], name, value, jose.b64url_encode(raw.encode()))

    @classmethod
    def decode(cls, encoded: str) -> Disclosure:
        arr = jose.loads_json(jose.b64url_decode(encoded), "a disclosure")
        if not (isinstance(arr, list) and len(arr) in (2, 3) and isinstance(arr[0], str)):
            raise MalformedMessage("a disclosure is not [salt, name, value] or [salt, value]")
        if len(arr) == 2:
            return cls(arr[0], None, arr[1], encoded)
        if not isinstance(arr[1], str):
            raise MalformedMessage("a disclosure's claim name is not a string")
        if arr[1] in CLEAR_CLAIMS and arr[1] not in SD_ENVELOPE:
            raise MalformedMessage("a disclosure shadows a reserved claim")
        return cls(arr[0], arr[1], arr[2], encoded)


def _salt() -> str:
    return jose.b64url_encode(secrets.token_bytes(SALT_BYTES))


def digest_of(encoded_disclosure: str) -> str:
    return jose.b64url_encode(hashlib.sha256(encoded_disclosure.encode("ascii")).digest())


def _decoy() -> str:
    return digest_of(jose.b64url_encode(secrets.token_bytes(32)))


@dataclass(frozen=True)
class SdJwt:
    """A parsed SD-JWT. ``jwt`` is the issuer-signed part, kept byte for byte."""

    jwt: str
    disclosures: tuple[Disclosure, ...]

    def serialize(self) -> str:
        return "~".join([self.jwt, *(d.encoded for d in self.disclosures)]) + "~"

    def present(self, digests: Iterable[str]) -> SdJwt:
        """The same issuer JWT with only the disclosures whose digests are named."""
        wanted = set(digests)
        return SdJwt(self.jwt, tuple(d for d in self.disclosures if d.digest in wanted))

    @classmethod
    def parse(cls, token: str) -> SdJwt:
        if not token.endswith("~"):
            raise MalformedMessage("SD-JWT must end with '~' (key binding is not used)")
        parts = token.split("~")
        jwt, encoded = parts[0], parts[1:-1]
        if not jwt or any(not e for e in encoded):
            raise MalformedMessage("SD-JWT has an empty component")
        return cls(jwt, tuple(Disclosure.decode(e) for e in encoded))


@dataclass(frozen=True)
class VerifiedSdJwt:
    """An SD-JWT whose signature and disclosures verified, sorted by where each belongs."""

    header: dict[str, Any]
    payload: dict[str, Any]
    disclosures: tuple[Disclosure, ...]
    token: SdJwt

    @property
    def body(self) -> tuple[Disclosure, ...]:
        """The body fields' disclosures (object properties that are not envelope claims)."""
        return tuple(d for d in self.disclosures if d.name is not None and d.name not in SD_ENVELOPE)

    @property
    def claims(self) -> dict[str, Any]:
        """The disclosed body claims by name."""
        return {d.name: d.value for d in self.body if d.name is not None}

    @property
    def digests(self) -> dict[str, str]:
        """Body field name -> digest of its disclosure."""
        return {d.name: d.digest for d in self.body if d.name is not None}

    @property
    def envelope(self) -> dict[str, Disclosure]:
        """Disclosed envelope claims (``consent_ref``, ``override``) by name."""
        return {d.name: d for d in self.disclosures if d.name in SD_ENVELOPE}

    @property
    def subjects(self) -> tuple[Disclosure, ...]:
        """Disclosed ``subjects`` elements, in the order the issuer listed them."""
        order = {d: i for i, d in enumerate(_array_digests(self.payload))}
        return tuple(sorted((d for d in self.disclosures if d.is_element),
                            key=lambda d: order[d.digest]))


def issue(clear: Mapping[str, Any], body: Mapping[str, Any], key: OKPKey, *, decoys: int = 0,
          subjects: Sequence[Any] = (),
          envelope: Mapping[str, Any] | None = None) -> SdJwt:
    """Sign ``clear`` claims; every ``body`` field, every subject and every ``envelope``
    claim (``consent_ref``, ``override``) made selectively disclosable."""
    shadowed = CLEAR_CLAIMS.intersection(body)
    if shadowed:
        raise MalformedMessage(f"body fields shadow reserved claims: {sorted(shadowed)}")
    extra = set(envelope or {}) - SD_ENVELOPE
    if extra:
        raise MalformedMessage(f"not a selectively disclosable envelope claim: {sorted(extra)}")
    props = [Disclosure.create(n, v) for n, v in {**body, **(envelope or {})}.items()]
    elements = [Disclosure.element(dict(s) if isinstance(s, Mapping) else s) for s in subjects]
    digests = [d.digest for d in props] + [_decoy() for _ in range(decoys)]
    payload = {**clear, SD_ARRAY: [{"...": d.digest} for d in elements],
               "_sd_alg": SD_ALG, "_sd": sorted(digests)}
    return SdJwt(jose.sign(payload, key, TYP), (*props, *elements))


def _is_digest(value: str) -> bool:
    """43 characters of canonical unpadded base64url: the encoding of a SHA-256 digest."""
    return len(value) == 43 and jose.is_b64url(value)


def _array_digests(payload: Mapping[str, Any]) -> list[str]:
    items = payload.get(SD_ARRAY)
    if not isinstance(items, list):
        raise MalformedMessage("subjects must be a list of {\"...\": digest}")
    out: list[str] = []
    for item in items:
        if not (isinstance(item, dict) and set(item) == {"..."} and isinstance(item["..."], str)):
            raise MalformedMessage("each subjects entry must be {\"...\": digest}")
        out.append(item["..."])
    return out


def _no_hidden_digests(value: Any, top: bool = True) -> None:
    """Selective disclosure happens only where this profile allows it (top-level ``_sd``
    and the ``subjects`` array); a digest anywhere else would be a claim nobody checks."""
    if isinstance(value, dict):
        for k, v in value.items():
            if (k in ("_sd", "...") and not top) or k == "...":
                raise MalformedMessage("selective disclosure is only allowed at the top level "
                                       "and in subjects")
            if not (top and k in ("_sd", SD_ARRAY)):
                _no_hidden_digests(v, top=False)
    elif isinstance(value, list):
        for v in value:
            _no_hidden_digests(v, top=False)


def verify(token: str | SdJwt, lookup: jose.KeyLookup) -> VerifiedSdJwt:
    """Verify the issuer signature and that every disclosure is one the issuer signed.

    Raises ``SignatureInvalid`` for the signature, ``DisclosureMismatch`` for a disclosure
    whose digest is not in the payload, is in the wrong place, or repeats,
    ``MalformedMessage`` for structure (a digest listed twice included).
    """
    sd = SdJwt.parse(token) if isinstance(token, str) else token
    header, payload = jose.verify(sd.jwt, lookup, TYP)
    if payload.get("_sd_alg") != SD_ALG:
        raise MalformedMessage("_sd_alg must be sha-256")
    signed = payload.get("_sd")
    if not isinstance(signed, list) or not all(isinstance(d, str) for d in signed):
        raise MalformedMessage("_sd must be a list of digests")
    elements = _array_digests(payload)
    if not all(_is_digest(d) for d in (*signed, *elements)):
        # decoys included: whatever stands where a digest goes has a digest's shape, so a
        # recipient's validator (docs/spec/schemas/message-payload.schema.json) accepts it too
        raise MalformedMessage("every _sd and subjects entry must be a base64url SHA-256 digest")
    _no_hidden_digests(payload)
    if len(set(signed) | set(elements)) != len(signed) + len(elements):
        raise MalformedMessage("a digest appears more than once in the signed payload")
    props, slots = set(signed), set(elements)
    seen_digests: set[str] = set()
    seen_names: set[str] = set()
    for d in sd.disclosures:
        digest = d.digest
        if digest in seen_digests:
            raise DisclosureMismatch("a disclosure is repeated")
        seen_digests.add(digest)
        if d.is_element:
            if digest not in slots:
                raise DisclosureMismatch("an array-element disclosure is not signed by the issuer "
                                         "in subjects")
            continue
        if digest not in props:
            raise DisclosureMismatch("a disclosure is not signed by the issuer")
        assert d.name is not None
        if d.name in payload:
            raise MalformedMessage("a disclosure names a claim that travels in clear")
        if d.name in seen_names:
            raise DisclosureMismatch("a claim is disclosed twice")
        seen_names.add(d.name)
    return VerifiedSdJwt(header, payload, sd.disclosures, sd)
