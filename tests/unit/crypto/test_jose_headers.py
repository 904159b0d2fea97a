"""A protected header parameter outside the profile is a typed 'malformed', not a signature
that 'does not verify' or a JWE that 'does not decrypt': the sender is told what is wrong."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from joserfc import jwe

from broker.crypto import jose
from broker.crypto.keys import AgencyKeys
from broker.errors import MalformedMessage

KEYS = AgencyKeys.generate("police", date(2026, 12, 1))


def _jws(**extra: Any) -> str:
    """Signed with the header as given (joserfc itself will not sign an unknown parameter:
    the header is put together by hand; the signature over it is a real one)."""
    header = jose.b64url_encode(json.dumps(
        {"alg": "Ed25519", "kid": KEYS.sig.kid, "typ": "masp-ack+jwt", **extra}).encode())
    payload = jose.b64url_encode(json.dumps({"iss": "police"}).encode())
    signature = KEYS.sig.private_key.sign(f"{header}.{payload}".encode())  # type: ignore[union-attr]
    return f"{header}.{payload}.{jose.b64url_encode(signature)}"


def _lookup(kid: str) -> Any:
    return KEYS.sig


@pytest.mark.parametrize("extra", [{"foo": 1}, {"b64": False}, {"cty": 7}, {"nonce": "x"}])
def test_a_jws_header_outside_the_profile_is_malformed(extra: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage, match="outside the profile") as caught:
        jose.verify(_jws(**extra), _lookup, "masp-ack+jwt")
    assert "foo" not in str(caught.value) and "nonce" not in str(caught.value)


@pytest.mark.parametrize("extra", [{}, {"cty": "JWT"}])
def test_what_the_profile_ignores_still_verifies(extra: dict[str, Any]) -> None:
    assert jose.verify(_jws(**extra), _lookup, "masp-ack+jwt")[1] == {"iss": "police"}


def test_a_jwe_header_outside_the_profile_is_malformed() -> None:
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": KEYS.enc.kid, "cty": "masp+sd-jwt"}
    registry = jwe.JWERegistry(algorithms=["ECDH-ES+A256KW", "A256GCM"])
    sealed = jwe.encrypt_compact(header, b"x", KEYS.enc, registry=registry).split(".")
    peeked = json.loads(jose.b64url_decode(sealed[0]))
    odd = ".".join([jose.b64url_encode(json.dumps({**peeked, "foo": "bar"}).encode()), *sealed[1:]])
    with pytest.raises(MalformedMessage, match="outside the profile"):
        jose.decrypt(odd, {str(KEYS.enc.kid): KEYS.enc}, "masp+sd-jwt")
    typed = jwe.encrypt_compact({**header, "typ": "JOSE"}, b"x", KEYS.enc, registry=registry)
    assert jose.decrypt(typed, {str(KEYS.enc.kid): KEYS.enc}, "masp+sd-jwt") == b"x"
