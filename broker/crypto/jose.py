"""Compact JWS and JWE as MASP Exchange profiles them (docs/spec/jose-profile.md), on joserfc.

The profile is narrow on purpose: signatures are Ed25519 only (``EdDSA`` accepted from
verifiers' peers), encryption is ``ECDH-ES+A256KW`` + ``A256GCM`` to X25519 keys, no
``zip``. Headers are checked before any key is touched, so algorithm confusion, ``none``,
compression and unknown keys are refused without running the crypto at all. Every
base64url segment from the wire must be the one canonical unpadded encoding of its bytes
(``is_b64url``), checked before joserfc or anything else decodes it.
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jwe, jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwe import JWERegistry
from joserfc.jwk import OKPKey

from broker.errors import DecryptionFailed, MalformedMessage, PayloadTooLarge, SignatureInvalid

SIG_ALG = "Ed25519"
SIG_ALGS_ACCEPTED = frozenset({"Ed25519", "EdDSA"})
KEY_ALG = "ECDH-ES+A256KW"
CONTENT_ENC = "A256GCM"
X25519_KEY_BYTES = 32
#: Upper bound on a compact JWE we will even parse; a full referral is a few KiB.
MAX_COMPACT_BYTES = 512 * 1024

KeyLookup = Callable[[str], OKPKey]
# EdDSA is RFC 9864's deprecated name for the same Ed25519 signature; it is accepted, and used
# for an agency whose library knows no other (``broker/agencies.py``), on purpose: not worth a
# warning per token.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


class _JweRegistry(JWERegistry):
    """joserfc caps a JWE's ciphertext at 64 KiB by default; the bound that applies here is
    ``max_bytes`` on the whole compact object, checked before parsing (``decrypt``). Without
    this, a message between the two limits would be refused as if it were tampered with."""

    max_ciphertext_length = MAX_COMPACT_BYTES


_JWE_REGISTRY = _JweRegistry(algorithms=[KEY_ALG, CONTENT_ENC])
#: Header parameters that point at (or carry) a key. Keys are found by ``kid`` in the registry
#: only, so a header naming a key elsewhere is an attempt to choose the verifying key: refused.
KEY_REFERENCE_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256"})
#: What a protected header may hold beyond those (docs/spec/jose-profile.md). joserfc refuses
#: anything it does not know as a failed signature or decryption, which misleads the sender:
#: it is refused here first, typed, without naming the parameter (the sender's word).
JWS_HEADERS = frozenset({"alg", "kid", "typ", "cty", "b64"})
JWE_HEADERS = frozenset({"alg", "enc", "kid", "cty", "epk", "apu", "apv", "typ", "zip"})


#: The base64url alphabet (RFC 4648 §5) and nothing else: no padding, no whitespace.
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
#: The characters that may end a segment whose length leaves 2 or 3 characters in the last
#: quantum: those whose bits past the last whole byte are zero (RFC 4648 §3.5, canonical form).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def is_b64url(segment: str) -> bool:
    """Whether ``segment`` is the one canonical unpadded base64url encoding of some bytes.

    Python's decoder skips characters outside the alphabet and ignores the unused low bits
    of the last character, so ``QQ``, ``QR`` and ``Q!Q`` all decode to ``A``: several
    spellings of one value. Where a digest is taken over the encoded form (SD-JWT
    disclosures) or two parsers read the same segment (ours and joserfc's), only one
    spelling may be accepted.
    """
    if not _B64URL.fullmatch(segment):
        return False
    rest = len(segment) % 4
    return rest == 0 or (rest != 1 and segment[-1] in _CANONICAL_LAST[rest])


def b64url_decode(segment: str) -> bytes:
    """Decode strict base64url: the alphabet only, no padding, canonical last character.

    The refusal never quotes the segment: it may be anything an attacker sent.
    """
    if not is_b64url(segment):
        raise MalformedMessage("a segment is not canonical unpadded base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def canonical_json(value: Any) -> bytes:
    """Compact JSON for payloads we sign (not RFC 8785: readers never re-serialise it)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedMessage("a JSON object repeats a member name")
    return obj


def loads_json(raw: bytes | str, what: str) -> Any:
    """Parse JSON from outside: repeated member names (parsers disagree on which wins, RFC 7515
    §5.2) and nesting deep enough to exhaust the parser's recursion are refused, typed."""
    try:
        return json.loads(raw, object_pairs_hook=_unique_members)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MalformedMessage(f"{what} is not JSON") from None


def compact_segments(token: str, parts: int) -> list[str]:
    """The segments of a compact JWS (3) or JWE (5) from the wire, each checked strict base64url.

    joserfc decodes the segments again on its own. It happens to be strict today, but the
    profile should not rest on a dependency's leniency staying as it is, and a segment one
    decoder reads differently from the other is a parser differential: so every segment is
    checked here, before any of it is decoded by either, and refused as ``MalformedMessage``.
    An empty segment is the valid encoding of nothing; what it means is for the caller.
    """
    segments = token.split(".")
    if len(segments) != parts:
        raise MalformedMessage(f"compact serialization must have {parts} segments")
    for number, segment in enumerate(segments, start=1):
        if not is_b64url(segment):
            raise MalformedMessage(f"segment {number} of the compact serialization is not "
                                   "canonical unpadded base64url")
    return segments


def peek_header(token: str, parts: int) -> dict[str, Any]:
    """Decode the protected header of a compact JOSE object without verifying anything.

    Every segment, not only the header, must be strict base64url (``compact_segments``):
    each entry point that takes a token from the wire (``verify``, ``decrypt``, the callers
    that only peek) passes through here first.
    """
    segments = compact_segments(token, parts)
    header = loads_json(b64url_decode(segments[0]), "protected header")
    if not isinstance(header, dict):
        raise MalformedMessage("protected header is not a JSON object")
    if "crit" in header:
        raise MalformedMessage("critical header parameters are not supported")
    named = KEY_REFERENCE_HEADERS.intersection(header)
    if named:
        raise MalformedMessage(f"header parameter {sorted(named)[0]} is not accepted: keys are found by kid")
    return header


# --- JWS ------------------------------------------------------------------------------


def peek_jws_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, checked against the profile and nothing else
    (no key is looked up): what every caller reads first, before it even parses the kid."""
    header = peek_header(token, 3)
    if not JWS_HEADERS.issuperset(header) or header.get("b64", True) is not True \
            or not isinstance(header.get("cty", ""), str):
        raise MalformedMessage("the JWS protected header has a parameter outside the profile "
                               "(alg, kid, typ; cty and b64 true are ignored)")
    return header


def sign(payload: Mapping[str, Any], key: OKPKey, typ: str, alg: str = SIG_ALG) -> str:
    """A compact JWS. ``alg``: ``Ed25519`` (RFC 9864) or ``EdDSA`` (RFC 8037), the name the
    reader's library knows; the signature is the same Ed25519 signature either way."""
    if key.kid is None:
        raise SignatureInvalid("signing key has no kid")
    if alg not in SIG_ALGS_ACCEPTED:
        raise SignatureInvalid("signature algorithm must be Ed25519 (or its older name EdDSA)")
    header = {"alg": alg, "kid": key.kid, "typ": typ}
    return jws.serialize_compact(header, canonical_json(payload), key, algorithms=[alg])


def verify(token: str, lookup: KeyLookup, typ: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS of the given ``typ``; return (header, payload).

    ``lookup`` maps the header's kid to a registered key and raises if there is none, so
    the caller decides which keys (and which agency's) may sign this kind of token.
    """
    if len(token) > MAX_COMPACT_BYTES:
        raise PayloadTooLarge("signed token exceeds the size limit")
    header = peek_jws_header(token)
    if header.get("alg") not in SIG_ALGS_ACCEPTED:
        raise SignatureInvalid("signature algorithm must be Ed25519")
    if header.get("typ") != typ:
        raise SignatureInvalid(f"token typ must be {typ}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise SignatureInvalid("token has no kid")
    key = lookup(kid)
    if key.curve_name != "Ed25519":
        raise SignatureInvalid("key is not an Ed25519 signing key")
    try:
        obj = jws.deserialize_compact(token, key, algorithms=list(SIG_ALGS_ACCEPTED))
    except JoseError:
        raise SignatureInvalid(f"signature by {kid} does not verify") from None
    payload = loads_json(obj.payload, "signed payload")
    if not isinstance(payload, dict):
        raise MalformedMessage("signed payload is not a JSON object")
    return dict(obj.headers()), payload


# --- JWE ------------------------------------------------------------------------------


def encrypt(plaintext: bytes, recipient: OKPKey, cty: str) -> str:
    if recipient.kid is None or recipient.curve_name != "X25519":
        raise DecryptionFailed("recipient key must be an X25519 key with a kid")
    header = {"alg": KEY_ALG, "enc": CONTENT_ENC, "kid": recipient.kid, "cty": cty}
    return jwe.encrypt_compact(header, plaintext, recipient, registry=_JWE_REGISTRY)


def decrypt(token: str | bytes, keys: Mapping[str, OKPKey], cty: str,
            *, max_bytes: int = MAX_COMPACT_BYTES) -> bytes:
    """Decrypt a compact JWE addressed to one of ``keys`` (by kid) with content type ``cty``."""
    if len(token) > max_bytes:
        raise PayloadTooLarge(f"JWE exceeds {max_bytes} bytes")
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedMessage("JWE compact serialization must be ASCII") from None
    token = token.strip()
    header = peek_header(token, 5)
    if not JWE_HEADERS.issuperset(header):
        raise MalformedMessage("the JWE protected header has a parameter outside the profile "
                               "(alg, enc, kid, cty, epk, apu, apv; typ is ignored)")
    if "zip" in header:
        raise DecryptionFailed("compressed JWE is refused")
    if header.get("alg") != KEY_ALG or header.get("enc") != CONTENT_ENC:
        raise DecryptionFailed(f"JWE must use {KEY_ALG} with {CONTENT_ENC}")
    if header.get("cty") != cty:
        raise DecryptionFailed(f"JWE content type must be {cty}")
    kid = header.get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise DecryptionFailed("JWE is not addressed to a current key of this recipient")
    epk = header.get("epk")
    if not isinstance(epk, dict) or epk.get("kty") != "OKP" or epk.get("crv") != "X25519":
        raise DecryptionFailed("JWE ephemeral key must be an X25519 OKP key")
    # base64url inside the header reaches joserfc's decoder too: the same strictness
    x = epk.get("x")
    if not isinstance(x, str) or len(b64url_decode(x)) != X25519_KEY_BYTES:
        raise DecryptionFailed("JWE ephemeral key must be an X25519 OKP key")
    for name in ("apu", "apv"):
        if name in header and not (isinstance(header[name], str) and is_b64url(header[name])):
            raise MalformedMessage(f"JWE header parameter {name} is not canonical unpadded base64url")
    try:
        return jwe.decrypt_compact(token, key, registry=_JWE_REGISTRY).plaintext or b""
    except (JoseError, ValueError):
        raise DecryptionFailed("JWE does not decrypt (tampered or not for this key)") from None
