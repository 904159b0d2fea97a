"""An attacker's JOSE toolkit: compact JWE and JWS with any header, built from primitives.

joserfc refuses to produce most of these objects (that is the point), so they are written
out with ``cryptography`` directly: ECDH-ES+A256KW (RFC 7518 §4.6, Concat KDF) over X25519,
AES key wrap, AES-GCM with the protected header as AAD, optional raw DEFLATE (``zip``).
A forged object is *well made* — its tag verifies for what it claims — so a refusal shows
the broker checked the claim, not that the bytes were broken.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import zlib
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import OKPKey

from broker.crypto.jose import b64url_encode

#: X25519 points of small order (RFC 7748 §5 / the Curve25519 "bad points" list): each gives a
#: shared secret an attacker knows (all zero) whatever the broker's private key.
LOW_ORDER_POINTS: dict[str, bytes] = {
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order-8": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "order-8-b": bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    "p-1": bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    "p": bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
}


def _concat_kdf(z: bytes, alg: str, bits: int = 256) -> bytes:
    other = (len(alg).to_bytes(4, "big") + alg.encode() + (0).to_bytes(4, "big")
             + (0).to_bytes(4, "big") + bits.to_bytes(4, "big"))
    return ConcatKDFHash(hashes.SHA256(), bits // 8, other).derive(z)


def public_x(key: OKPKey) -> X25519PublicKey:
    public = key.public_key
    assert isinstance(public, X25519PublicKey)
    return public


def forge_jwe(plaintext: bytes, recipient: X25519PublicKey, *, header: dict[str, Any] | None = None,
              raw_header: bytes | None = None, low_order: bytes | None = None,
              compress: bool = False) -> str:
    """A compact ECDH-ES+A256KW/A256GCM JWE whose protected header is exactly what is asked.

    ``header`` members are added to (or replace) the usual ones; ``raw_header`` is used byte
    for byte (duplicate members, odd JSON). With ``low_order`` the ephemeral key is that point
    and the shared secret the all-zero one a naive implementation would compute.
    """
    if low_order is None:
        eph = X25519PrivateKey.generate()
        z = eph.exchange(recipient)
        x = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    else:
        z, x = bytes(32), low_order
    hdr: dict[str, Any] = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "cty": "masp+sd-jwt",
                           "epk": {"kty": "OKP", "crv": "X25519", "x": b64url_encode(x)}}
    hdr.update(header or {})
    protected = b64url_encode(raw_header if raw_header is not None
                              else json.dumps(hdr, separators=(",", ":")).encode())
    cek, iv = os.urandom(32), os.urandom(12)
    wrapped = aes_key_wrap(_concat_kdf(z, str(hdr.get("alg", "ECDH-ES+A256KW"))), cek)
    body = zlib.compress(plaintext)[2:-4] if compress else plaintext  # raw DEFLATE, RFC 1951
    sealed = AESGCM(cek).encrypt(iv, body, protected.encode("ascii"))
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return ".".join([protected, b64url_encode(wrapped), b64url_encode(iv),
                     b64url_encode(ciphertext), b64url_encode(tag)])


Signer = Callable[[bytes], bytes]


def ed25519_signer(private: Ed25519PrivateKey) -> Signer:
    return private.sign


def hmac_signer(secret: bytes) -> Signer:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def no_signature(_: bytes) -> bytes:
    return b""


def forge_jws(payload: dict[str, Any], sign: Signer, *, header: dict[str, Any] | None = None,
              raw_header: bytes | None = None) -> str:
    protected = b64url_encode(raw_header if raw_header is not None
                              else json.dumps(header or {}, separators=(",", ":")).encode())
    body = b64url_encode(json.dumps(payload, separators=(",", ":")).encode())
    signing_input = f"{protected}.{body}".encode("ascii")
    return f"{protected}.{body}.{b64url_encode(sign(signing_input))}"
