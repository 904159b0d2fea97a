"""JOSE attacks on the ingress (``POST /v1/messages``): each is refused with a specific
RFC 9457 problem type, recorded in the audit log as ``refused`` with rule ``ingress.<code>``,
and nothing reaches the outbox.

Every forged object is well made (its GCM tag or signature verifies for what it claims; see
``jose_forge``), so each refusal shows the broker checked that claim. A control case posts
the same forgery machinery's honest output and is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker import wire
from broker.crypto import jose
from broker.crypto.keys import BROKER
from broker.errors import PROBLEM_BASE
from tests.security import jose_forge as forge
from tests.security.conftest import Api

PROBLEM_JSON = "application/problem+json"
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def api(shared_api: Api) -> Api:
    # each attack must be on record in full: close the refusal windows another test opened,
    # or a repeat of its kind would only be counted into a summary (broker/refusals.py)
    await shared_api.service.exchange.refusals.flush(everything=True)
    return shared_api


def _signed_parts(api: Api, sender: str = "police") -> tuple[dict[str, object], str]:
    """A valid message's JWT payload and its disclosures (``~d1~d2~``), to re-sign at will."""
    _, jwe = api.referral(sender)
    raw = wire.decrypt_submission(jwe, {str(api.keys[BROKER].enc.kid): api.keys[BROKER].enc}, 1 << 20)
    jwt, _, disclosures = raw.partition("~")
    payload = json.loads(jose.b64url_decode(jwt.split(".")[1]))
    return payload, "~" + disclosures


def _private(api: Api, agency: str) -> Ed25519PrivateKey:
    key = api.keys[agency].sig.private_key
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _sd_jwt(api: Api, sign: forge.Signer, header: dict[str, object] | None = None,
            raw_header: bytes | None = None, sender: str = "police") -> bytes:
    payload, disclosures = _signed_parts(api, sender)
    jwt = forge.forge_jws(payload, sign, header=header, raw_header=raw_header)
    return (jwt + disclosures).encode("ascii")


def _seal(api: Api, plaintext: bytes, **kw: object) -> str:
    return forge.forge_jwe(plaintext, forge.public_x(api.keys[BROKER].enc), **kw)  # type: ignore[arg-type]


def _police_header(api: Api, **extra: object) -> dict[str, object]:
    return {"alg": "Ed25519", "kid": api.keys["police"].sig.kid, "typ": "masp+sd-jwt", **extra}


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[Api], str]
    code: str
    status: int


def _honest_inner(api: Api) -> bytes:
    return _sd_jwt(api, forge.ed25519_signer(_private(api, "police")), _police_header(api))


def _broker_kid(api: Api) -> str:
    return str(api.keys[BROKER].enc.kid)


def _with_tag(api: Api, change: Callable[[bytes], bytes]) -> str:
    parts = _seal(api, _honest_inner(api), header={"kid": _broker_kid(api)}).split(".")
    parts[4] = jose.b64url_encode(change(jose.b64url_decode(parts[4])))
    return ".".join(parts)


def _dup_header(api: Api) -> bytes:
    epk = forge.forge_jwe(b"", forge.public_x(api.keys[BROKER].enc)).split(".")[0]
    hdr = json.loads(jose.b64url_decode(epk))
    text = json.dumps({**hdr, "kid": _broker_kid(api)}, separators=(",", ":"))
    return (text[:-1] + ',"enc":"A128GCM"}').encode()  # a second "enc": parsers disagree on which wins


def _hs256_with_public_key(api: Api) -> str:
    public = api.keys["police"].sig.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[union-attr]
    inner = _sd_jwt(api, forge.hmac_signer(public), _police_header(api, alg="HS256"))
    return _seal(api, inner, header={"kid": _broker_kid(api)})


def _inner(header: Callable[[Api], dict[str, object]], signer: str = "police",
           sender: str = "police") -> Callable[[Api], str]:
    def build(api: Api) -> str:
        inner = _sd_jwt(api, forge.ed25519_signer(_private(api, signer)), header(api), sender=sender)
        return _seal(api, inner, header={"kid": _broker_kid(api)})
    return build


def _outer(header: Callable[[Api], dict[str, object]], **kw: object) -> Callable[[Api], str]:
    return lambda api: _seal(api, _honest_inner(api), header={"kid": _broker_kid(api), **header(api)}, **kw)


def _attacker_with_jwk(api: Api) -> str:
    attacker = Ed25519PrivateKey.generate()
    x = attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    header = _police_header(api, jwk={"kty": "OKP", "crv": "Ed25519", "x": jose.b64url_encode(x)})
    return _seal(api, _sd_jwt(api, forge.ed25519_signer(attacker), header), header={"kid": _broker_kid(api)})


def _deep_disclosure(api: Api) -> str:
    deep = jose.b64url_encode(b'["c2FsdA","x",' + b"[" * 5_000 + b"]" * 5_000 + b"]")
    inner = _honest_inner(api).decode("ascii") + deep + "~"
    return _seal(api, inner.encode("ascii"), header={"kid": _broker_kid(api)})


_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _respelt(segment: str) -> str:
    """The same bytes with a non-zero unused bit in the last character: a lenient decoder
    (Python's) reads it as the original, a strict one refuses it."""
    assert len(segment) % 4 in (2, 3)
    return segment[:-1] + _RFC4648[_RFC4648.index(segment[-1]) + 1]


def _jwe_segment(index: int, change: Callable[[str], str]) -> Callable[[Api], str]:
    def build(api: Api) -> str:
        parts = _seal(api, _honest_inner(api), header={"kid": _broker_kid(api)}).split(".")
        parts[index] = change(parts[index])
        return ".".join(parts)
    return build


def _jws_signature(change: Callable[[str], str]) -> Callable[[Api], str]:
    def build(api: Api) -> str:
        jwt, _, disclosures = _honest_inner(api).decode("ascii").partition("~")
        head, body, signature = jwt.split(".")
        return _seal(api, f"{head}.{body}.{change(signature)}~{disclosures}".encode("ascii"),
                     header={"kid": _broker_kid(api)})
    return build


def _disclosure(change: Callable[[str], str]) -> Callable[[Api], str]:
    def build(api: Api) -> str:
        jwt, *disclosures, end = _honest_inner(api).decode("ascii").split("~")
        partial = next(i for i, d in enumerate(disclosures) if len(d) % 4 in (2, 3))
        disclosures[partial] = change(disclosures[partial])
        return _seal(api, "~".join([jwt, *disclosures, end]).encode("ascii"),
                     header={"kid": _broker_kid(api)})
    return build


ATTACKS = [
    # --- the JWE around the message ----------------------------------------------------
    Attack("jwe alg none", _outer(lambda a: {"alg": "none"}), "decryption-failed", 400),
    Attack("jwe alg dir", _outer(lambda a: {"alg": "dir"}), "decryption-failed", 400),
    Attack("jwe alg ECDH-ES (no key wrap)", _outer(lambda a: {"alg": "ECDH-ES"}), "decryption-failed", 400),
    Attack("jwe alg RSA-OAEP", _outer(lambda a: {"alg": "RSA-OAEP"}), "decryption-failed", 400),
    Attack("jwe enc A128GCM", _outer(lambda a: {"enc": "A128GCM"}), "decryption-failed", 400),
    Attack("jwe enc A256CBC-HS512", _outer(lambda a: {"enc": "A256CBC-HS512"}), "decryption-failed", 400),
    Attack("jwe zip DEF (really compressed)", _outer(lambda a: {"zip": "DEF"}, compress=True),
           "decryption-failed", 400),
    Attack("jwe kid path traversal", _outer(lambda a: {"kid": "../../keys/broker/enc.private.jwk"}),
           "decryption-failed", 400),
    Attack("jwe kid unknown", _outer(lambda a: {"kid": "broker-enc-20991231"}), "decryption-failed", 400),
    Attack("jwe kid of another agency", _outer(lambda a: {"kid": str(a.keys["police"].enc.kid)}),
           "decryption-failed", 400),
    Attack("jwe kid of the broker's signing key", _outer(lambda a: {"kid": str(a.keys[BROKER].sig.kid)}),
           "decryption-failed", 400),
    Attack("jwe jku header", _outer(lambda a: {"jku": "https://attacker.invalid/jwks.json"}),
           "malformed", 400),
    Attack("jwe x5u header", _outer(lambda a: {"x5u": "https://attacker.invalid/cert.pem"}),
           "malformed", 400),
    Attack("jwe jwk header", _outer(lambda a: {"jwk": {"kty": "OKP", "crv": "X25519", "x": "AA"}}),
           "malformed", 400),
    Attack("jwe crit header", _outer(lambda a: {"crit": ["exp"], "exp": 1}), "malformed", 400),
    Attack("jwe epk on P-256", _outer(lambda a: {"epk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
           "decryption-failed", 400),
    Attack("jwe wrong cty", _outer(lambda a: {"cty": "JWT"}), "decryption-failed", 400),
    Attack("jwe duplicate header member", lambda a: _seal(a, _honest_inner(a), raw_header=_dup_header(a)),
           "malformed", 400),
    Attack("jwe GCM tag truncated", lambda a: _with_tag(a, lambda t: t[:12]), "decryption-failed", 400),
    Attack("jwe GCM tag emptied", lambda a: _with_tag(a, lambda t: b""), "decryption-failed", 400),
    Attack("jwe GCM tag bit flipped", lambda a: _with_tag(a, lambda t: bytes([t[0] ^ 1]) + t[1:]),
           "decryption-failed", 400),
    Attack("jwe deeply nested header", lambda a: ".".join(
        [jose.b64url_encode(b"[" * 50_000 + b"]" * 50_000), "AA", "AA", "AA", "AA"]), "malformed", 400),
    Attack("jwe ciphertext outside the base64url alphabet", _jwe_segment(3, lambda c: c[:4] + "!" + c[4:]),
           "malformed", 400),
    Attack("jwe GCM tag spelt non-canonically", _jwe_segment(4, _respelt), "malformed", 400),
    Attack("jwe IV padded", _jwe_segment(2, lambda iv: iv + "=="), "malformed", 400),
    Attack("jwe key length 1 mod 4", _jwe_segment(1, lambda k: k + "A" * ((1 - len(k)) % 4 or 4)),
           "malformed", 400),
    *(Attack(f"jwe low-order epk {name}",
             lambda a, p=point: _seal(a, _honest_inner(a), header={"kid": _broker_kid(a)}, low_order=p),
             "decryption-failed", 400) for name, point in forge.LOW_ORDER_POINTS.items()),
    # --- the agency's signature inside ---------------------------------------------------
    Attack("jws alg none", lambda a: _seal(a, _sd_jwt(a, forge.no_signature, _police_header(a, alg="none")),
                                            header={"kid": _broker_kid(a)}), "signature-invalid", 401),
    Attack("jws HS256 keyed with the sender's public key", _hs256_with_public_key, "signature-invalid", 401),
    Attack("jws alg RS256", _inner(lambda a: _police_header(a, alg="RS256")), "signature-invalid", 401),
    Attack("jws alg ES256", _inner(lambda a: _police_header(a, alg="ES256")), "signature-invalid", 401),
    Attack("jws kid path traversal", _inner(lambda a: _police_header(a, kid="../../../etc/passwd")),
           "unknown-sender", 401),
    Attack("jws kid unknown", _inner(lambda a: _police_header(a, kid="police-sig-20991231")),
           "unknown-key", 401),
    Attack("jws kid of another agency (signed by it, iss police)",
           _inner(lambda a: _police_header(a, kid=a.keys["nhs"].sig.kid), signer="nhs"),
           "signature-invalid", 401),
    Attack("jws police kid, signed by another agency", _inner(_police_header, signer="nhs"),
           "signature-invalid", 401),
    Attack("jws kid of the broker",
           _inner(lambda a: _police_header(a, kid=a.keys[BROKER].sig.kid), signer=BROKER),
           "signature-invalid", 401),
    Attack("jws signed by the attacker, its jwk embedded", _attacker_with_jwk, "malformed", 400),
    Attack("disclosure nested past the parser's depth", _deep_disclosure, "malformed", 400),
    Attack("jws jku header", _inner(lambda a: _police_header(a, jku="https://attacker.invalid/jwks")),
           "malformed", 400),
    Attack("jws x5u header", _inner(lambda a: _police_header(a, x5u="https://attacker.invalid/c.pem")),
           "malformed", 400),
    Attack("jws crit header", _inner(lambda a: _police_header(a, crit=["b64"], b64=False)), "malformed", 400),
    Attack("jws signature spelt non-canonically", _jws_signature(_respelt), "malformed", 400),
    Attack("jws signature outside the base64url alphabet", _jws_signature(lambda g: g[:3] + "%2B" + g[3:]),
           "malformed", 400),
    Attack("disclosure outside the base64url alphabet", _disclosure(lambda d: d[:5] + "!" + d[5:]),
           "malformed", 400),
    Attack("disclosure spelt non-canonically", _disclosure(_respelt), "malformed", 400),
    Attack("jws wrong typ", _inner(lambda a: _police_header(a, typ="JWT")), "signature-invalid", 401),
]




async def _assert_refused(api: Api, jwe: str, code: str, status: int) -> None:
    before, delivered = await api.head(), await api.deliveries()
    resp = await api.post_message(jwe)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_JSON
    problem = resp.json()
    assert problem["type"] == PROBLEM_BASE + code and problem["status"] == status, problem
    assert problem["title"] and problem["detail"]
    new = await api.entries(after=before)
    assert [(e.kind, e.rules, e.decision) for e in new] == [("refused", (f"ingress.{code}",), "deny")]
    assert new[0].actor.agency == "police" and new[0].payload_digest
    assert await api.deliveries() == delivered, "a refused submission queued a delivery"


async def test_honest_forgery_is_accepted(api: Api) -> None:
    """The control: the toolkit's honest JWE around an honestly signed message is accepted,
    so the refusals below are about what each attack changes."""
    delivered = await api.deliveries()
    resp = await api.post_message(_seal(api, _honest_inner(api), header={"kid": _broker_kid(api)}))
    assert resp.status_code == 202, resp.text
    assert await api.deliveries() > delivered


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
async def test_attack_refused_audited_nothing_delivered(api: Api, attack: Attack) -> None:
    await _assert_refused(api, attack.build(api), attack.code, attack.status)


async def test_large_message_under_the_limit_is_not_mistaken_for_tampering(api: Api) -> None:
    """joserfc's own 64 KiB ciphertext cap would refuse this as ``decryption-failed``."""
    limit = api.service.exchange.max_message_bytes
    inner = _honest_inner(api)
    padded = inner + b"A" * (limit // 2)  # ~170 KiB of JWE: well over 64 KiB, under the limit
    resp = await api.post_message(_seal(api, padded, header={"kid": _broker_kid(api)}))
    assert resp.status_code == 400 and resp.json()["type"] == PROBLEM_BASE + "malformed", resp.text


async def test_oversized_jwe_refused_before_reading_it_all(api: Api) -> None:
    limit = api.service.exchange.max_message_bytes
    _, jwe = api.referral()
    padded = jwe + "A" * (limit + 1 - len(jwe))
    await _assert_refused(api, padded, "too-large", 413)


async def test_oversized_jwe_without_content_length_refused(api: Api) -> None:
    limit = api.service.exchange.max_message_bytes

    async def chunks():  # type: ignore[no-untyped-def]  # a streamed body announces no length
        for _ in range(limit // 4096 + 2):
            yield b"A" * 4096

    before, delivered = await api.head(), await api.deliveries()
    resp = await api.http.post("/v1/messages", content=chunks(), headers={
        "content-type": "application/jose", **api.agency("police")})
    assert resp.status_code == 413 and resp.json()["type"] == PROBLEM_BASE + "too-large"
    assert [e.rules for e in await api.entries(after=before)] == [("ingress.too-large",)]
    assert await api.deliveries() == delivered


@pytest.mark.parametrize(("name", "header", "sign"), [
    ("alg none", {"alg": "none", "typ": "JWT"}, "none"),
    ("HS256 keyed with the public key", {"alg": "HS256", "typ": "JWT"}, "hmac"),
    ("kid path traversal", {"alg": "Ed25519", "typ": "JWT", "kid": "../../police"}, "ed25519"),
])
async def test_forged_agency_assertions_are_401(api: Api, name: str, header: dict[str, object],
                                                sign: str) -> None:
    """The bearer assertion is a JWS too: the same confusions are refused there (401, no body read)."""
    now = wire.epoch(api.service.exchange.clock())
    claims = {"iss": "police", "sub": "police", "aud": BROKER, "jti": wire.new_id(), "iat": now,
              "exp": now + 60}
    public = api.keys["police"].sig.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[union-attr]
    signer = {"none": forge.no_signature, "hmac": forge.hmac_signer(public),
              "ed25519": forge.ed25519_signer(_private(api, "police"))}[sign]
    header = {"kid": api.keys["police"].sig.kid, **header}
    token = forge.forge_jws(claims, signer, header=header)
    _, jwe = api.referral()
    resp = await api.http.post("/v1/messages", content=jwe, headers={
        "content-type": "application/jose", "authorization": f"Bearer {token}"})
    assert resp.status_code == 401, name
    assert resp.json()["type"] == PROBLEM_BASE + "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"


async def test_a_respelt_agency_assertion_is_401_and_spends_nothing(api: Api) -> None:
    """A bearer assertion whose signature is spelt non-canonically is refused before its
    signature is checked, and its jti is not recorded: the honest spelling still works once."""
    token = wire.sign_agency_auth(api.keys["police"], api.service.exchange.clock())
    head, body, signature = token.split(".")
    for bad in (f"{head}.{body}.{_respelt(signature)}", f"{head}.{body}.{signature}==",
                f"{head}.{body[:4]}!{body[4:]}.{signature}"):
        resp = await api.http.get("/v1/mailbox", headers={"authorization": f"Bearer {bad}"})
        assert resp.status_code == 401, resp.text
        assert resp.json()["type"] == PROBLEM_BASE + "unauthorized"
        assert bad not in resp.text and signature not in resp.text
    ok = await api.http.get("/v1/mailbox", headers={"authorization": f"Bearer {token}"})
    assert ok.status_code == 200, ok.text
    again = await api.http.get("/v1/mailbox", headers={"authorization": f"Bearer {token}"})
    assert again.status_code == 401 and "already used" in again.json()["detail"]
