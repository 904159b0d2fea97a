"""SD-JWT (RFC 9901) as MASP Exchange uses it: flat, top-level disclosures only.

Every body field of a canonical message is one disclosure ``[salt, name, value]``; the
issuer-signed JWT carries only their digests. The broker forwards, per recipient, the
unchanged JWT plus the disclosures the DSA allows, so each recipient verifies the sending
agency's own signature over exactly what it received. No key binding: ``~`` ends the token.

No maintained Python SD-JWT library sits on joserfc with the RFC 9901 final text and
Ed25519, and the subset needed here is small, so it is written out and tested directly.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import OKPKey

from broker.crypto import jose
from broker.errors import DisclosureMismatch, MalformedMessage

TYP = "masp+sd-jwt"
SD_ALG = "sha-256"
#: Claims that travel in clear inside the JWT; a disclosure may never shadow one.
CLEAR_CLAIMS = frozenset({
    "iss", "jti", "iat", "exp", "nbf", "masp_type", "masp_schema", "case_id", "purpose",
    "subjects", "consent_ref", "override", "_sd", "_sd_alg", "cnf", "...",
})
SALT_BYTES = 16  # 128 bits, the RFC's recommended minimum


@dataclass(frozen=True)
class Disclosure:
    salt: str
    name: str
    value: Any
    encoded: str

    @property
    def digest(self) -> str:
        return digest_of(self.encoded)

    @classmethod
    def create(cls, name: str, value: Any) -> Disclosure:
        salt = jose.b64url_encode(secrets.token_bytes(SALT_BYTES))
        raw = json.dumps([salt, name, value], ensure_ascii=False, separators=(",", ":"))
        return cls(salt, name, value, jose.b64url_encode(raw.encode()))

    @classmethod
    def decode(cls, encoded: str) -> Disclosure:
        arr = jose.loads_json(jose.b64url_decode(encoded), "a disclosure")
        if not (isinstance(arr, list) and len(arr) == 3
                and isinstance(arr[0], str) and isinstance(arr[1], str)):
            raise MalformedMessage("a disclosure is not [salt, name, value]")
        if arr[1] in CLEAR_CLAIMS:
            raise MalformedMessage("a disclosure shadows a reserved claim")
        return cls(arr[0], arr[1], arr[2], encoded)


def digest_of(encoded_disclosure: str) -> str:
    return jose.b64url_encode(hashlib.sha256(encoded_disclosure.encode("ascii")).digest())


@dataclass(frozen=True)
class SdJwt:
    """A parsed SD-JWT. ``jwt`` is the issuer-signed part, kept byte for byte."""

    jwt: str
    disclosures: tuple[Disclosure, ...]

    def serialize(self) -> str:
        return "~".join([self.jwt, *(d.encoded for d in self.disclosures)]) + "~"

    def present(self, names: Iterable[str]) -> SdJwt:
        """The same issuer JWT with only the named disclosures."""
        wanted = set(names)
        return SdJwt(self.jwt, tuple(d for d in self.disclosures if d.name in wanted))

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
    header: dict[str, Any]
    payload: dict[str, Any]
    disclosures: tuple[Disclosure, ...]
    token: SdJwt

    @property
    def claims(self) -> dict[str, Any]:
        """The disclosed body claims by name."""
        return {d.name: d.value for d in self.disclosures}

    @property
    def digests(self) -> dict[str, str]:
        return {d.name: d.digest for d in self.disclosures}


def issue(clear: Mapping[str, Any], body: Mapping[str, Any], key: OKPKey,
          *, decoys: int = 0) -> SdJwt:
    """Sign ``clear`` claims with every ``body`` field made selectively disclosable."""
    shadowed = CLEAR_CLAIMS.intersection(body)
    if shadowed:
        raise MalformedMessage(f"body fields shadow reserved claims: {sorted(shadowed)}")
    disclosures = tuple(Disclosure.create(name, value) for name, value in body.items())
    digests = [d.digest for d in disclosures]
    digests += [digest_of(jose.b64url_encode(secrets.token_bytes(32))) for _ in range(decoys)]
    payload = {**clear, "_sd_alg": SD_ALG, "_sd": sorted(digests)}
    return SdJwt(jose.sign(payload, key, TYP), disclosures)


def verify(token: str | SdJwt, lookup: jose.KeyLookup) -> VerifiedSdJwt:
    """Verify the issuer signature and that every disclosure is one the issuer signed.

    Raises ``SignatureInvalid`` for the signature, ``DisclosureMismatch`` for a disclosure
    whose digest is not in ``_sd`` or that repeats, ``MalformedMessage`` for structure.
    """
    sd = SdJwt.parse(token) if isinstance(token, str) else token
    header, payload = jose.verify(sd.jwt, lookup, TYP)
    if payload.get("_sd_alg") != SD_ALG:
        raise MalformedMessage("_sd_alg must be sha-256")
    signed = payload.get("_sd")
    if not isinstance(signed, list) or not all(isinstance(d, str) for d in signed):
        raise MalformedMessage("_sd must be a list of digests")
    signed_set = set(signed)
    seen_digests: set[str] = set()
    seen_names: set[str] = set()
    for d in sd.disclosures:
        digest = d.digest
        if digest not in signed_set:
            raise DisclosureMismatch(f"disclosure of field {d.name!r} is not signed by the issuer")
        if digest in seen_digests or d.name in seen_names:
            raise DisclosureMismatch(f"field {d.name!r} is disclosed twice")
        seen_digests.add(digest)
        seen_names.add(d.name)
    return VerifiedSdJwt(header, payload, sd.disclosures, sd)
