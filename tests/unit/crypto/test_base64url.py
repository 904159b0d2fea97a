"""Strict base64url on everything decoded from the wire (``broker/crypto/jose.py``).

Python's ``urlsafe_b64decode`` skips characters outside the alphabet and ignores the unused
low bits of the last character, so one value has many spellings. The broker accepts exactly
one: the alphabet ``[A-Za-z0-9_-]``, no padding, a length that is not 1 modulo 4, and the
canonical last character. Each compact JWS and JWE is checked segment by segment before
joserfc (which decodes them again) sees it, and every refusal is a ``MalformedMessage`` that
does not quote what was sent.
"""

from __future__ import annotations

import base64
import json
import string
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from joserfc.jwk import OKPKey

from broker.crypto import jose, sdjwt
from broker.crypto.keys import generate_key
from broker.errors import MalformedMessage

ALPHABET = string.ascii_letters + string.digits + "-_"
#: Characters a lenient decoder would skip or translate: padding, the other alphabet,
#: whitespace, separators, and non-ASCII letters and digits that ``\w`` would let through.
OUTSIDE = ["=", "+", "/", " ", "\n", "\t", "!", ".", "~", "%", "é", "٣", "\x00", "\uff21"]
TYP = "masp-test+jwt"
CTY = "masp-test"


def _lenient(segment: str) -> bytes:
    """What Python's own decoder makes of a segment: the leniency being guarded against."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _noncanonical(segment: str) -> str:
    """The same bytes spelt with a non-zero unused bit in the last character (a canonical last
    character is a multiple of 4 or 16 in the RFC 4648 order, so the next one is never past it)."""
    assert len(segment) % 4 in (2, 3), "only a partial last quantum has unused bits"
    last = RFC4648_ORDER.index(segment[-1])
    return segment[:-1] + RFC4648_ORDER[last + 1]


RFC4648_ORDER = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def _refused(call: object, sent: str) -> MalformedMessage:
    assert callable(call)
    with pytest.raises(MalformedMessage) as caught:
        call()
    # (a very short input may occur in the fixed wording by chance: only longer ones tell)
    assert len(sent) < 8 or sent not in caught.value.detail, "a refusal must not echo what was sent"
    return caught.value


# --- the decoder ------------------------------------------------------------------------


def test_the_decoder_refuses_what_a_lenient_one_accepts() -> None:
    assert jose.b64url_decode("QQ") == b"A"
    for bad in ("QR", "QQ==", "QQ=", "Q!Q", "Q Q", "QQ\n", "Q+", "Q/", "QUFBQ", "Q", "ÀQ"):
        _refused(lambda bad=bad: jose.b64url_decode(bad), bad)
    # what Python alone accepts (with the padding added back, as the old decoder did)
    assert base64.urlsafe_b64decode("QR==") == base64.urlsafe_b64decode("Q!Q==") == b"A"


def test_noncanonical_last_characters_are_refused_for_both_partial_lengths() -> None:
    two, three = jose.b64url_encode(b"\xff"), jose.b64url_encode(b"\xff\xff")
    assert (len(two) % 4, len(three) % 4) == (2, 3)
    for good in (two, three, jose.b64url_encode(b"\x00"), jose.b64url_encode(b"\x00\x00")):
        bad = _noncanonical(good)
        assert _lenient(bad) == _lenient(good)
        _refused(lambda bad=bad: jose.b64url_decode(bad), bad)


@given(st.binary(max_size=96))
def test_decode_inverts_encode(raw: bytes) -> None:
    encoded = jose.b64url_encode(raw)
    assert jose.is_b64url(encoded)
    assert jose.b64url_decode(encoded) == raw


@given(st.binary(min_size=1, max_size=96), st.data())
def test_one_character_outside_the_alphabet_is_refused(raw: bytes, data: st.DataObject) -> None:
    encoded = jose.b64url_encode(raw)
    at = data.draw(st.integers(0, len(encoded) - 1), label="position")
    char = data.draw(st.sampled_from(OUTSIDE) | st.characters().filter(lambda c: c not in ALPHABET),
                     label="character")
    for mutated in (encoded[:at] + char + encoded[at + 1:], encoded[:at] + char + encoded[at:]):
        assert not jose.is_b64url(mutated)
        _refused(lambda m=mutated: jose.b64url_decode(m), mutated)


@given(st.text(alphabet=ALPHABET, max_size=40))
def test_whatever_is_accepted_is_the_one_spelling_of_its_bytes(text: str) -> None:
    try:
        raw = jose.b64url_decode(text)
    except MalformedMessage:
        assert len(text) % 4 == 1 or jose.b64url_encode(_lenient(text)) != text
    else:
        assert jose.b64url_encode(raw) == text


# --- compact JWS and JWE --------------------------------------------------------------


@pytest.fixture(scope="module")
def sig() -> OKPKey:
    return generate_key("police", "sig", date(2026, 1, 1))


@pytest.fixture(scope="module")
def enc() -> OKPKey:
    return generate_key("broker", "enc", date(2026, 1, 1))


def _spoilt(segment: str) -> dict[str, str]:
    """Every way to spoil one segment, each keeping a lenient decoder's answer where it can."""
    ways = {"outside the alphabet": segment[:1] + "!" + segment[1:],
            "non-ASCII digit": segment[:1] + "٣" + segment[1:],
            "padded": segment + "=" * (-len(segment) % 4 or 4),
            "whitespace inside": segment[:2] + "\n" + segment[2:],
            "length 1 mod 4": segment + "A" * ((1 - len(segment)) % 4 or 4)}
    if len(segment) % 4 in (2, 3):
        ways["non-canonical last character"] = _noncanonical(segment)
    return ways


def test_every_jws_segment_is_checked_before_joserfc(sig: OKPKey) -> None:
    token = jose.sign({"iss": "police", "n": 1}, sig, TYP)
    lookup = {str(sig.kid): sig}.__getitem__
    assert jose.verify(token, lookup, TYP)[1] == {"iss": "police", "n": 1}
    segments = token.split(".")
    for i, segment in enumerate(segments):
        for how, bad in _spoilt(segment).items():
            forged = ".".join([*segments[:i], bad, *segments[i + 1:]])
            exc = _refused(lambda f=forged: jose.verify(f, lookup, TYP), bad)
            assert f"segment {i + 1} of" in exc.detail, (i, how)
            _refused(lambda f=forged: jose.peek_header(f, 3), bad)


def test_a_noncanonical_signature_is_malformed_not_a_bad_signature(sig: OKPKey) -> None:
    token = jose.sign({"iss": "police"}, sig, TYP)
    head, body, signature = token.split(".")
    assert len(signature) % 4 == 2  # 64 bytes
    forged = f"{head}.{body}.{_noncanonical(signature)}"
    _refused(lambda: jose.verify(forged, {str(sig.kid): sig}.__getitem__, TYP), signature)


def test_every_jwe_segment_is_checked_before_joserfc(enc: OKPKey) -> None:
    token = jose.encrypt(b"plaintext", enc, CTY)
    keys = {str(enc.kid): enc}
    assert jose.decrypt(token, keys, CTY) == b"plaintext"
    assert jose.decrypt(token.encode("ascii"), keys, CTY) == b"plaintext"
    segments = token.split(".")
    for i, segment in enumerate(segments):
        for how, bad in _spoilt(segment).items():
            forged = ".".join([*segments[:i], bad, *segments[i + 1:]])
            exc = _refused(lambda f=forged: jose.decrypt(f, keys, CTY), bad)
            assert f"segment {i + 1} of" in exc.detail, (i, how)


def _with_header(token: str, change: dict[str, object]) -> str:
    head, *rest = token.split(".")
    header = json.loads(jose.b64url_decode(head))
    header.update(change)
    return ".".join([jose.b64url_encode(json.dumps(header).encode()), *rest])


def test_base64url_inside_the_jwe_header_is_strict_too(enc: OKPKey) -> None:
    token = jose.encrypt(b"plaintext", enc, CTY)
    keys = {str(enc.kid): enc}
    header = json.loads(jose.b64url_decode(token.split(".")[0]))
    x = header["epk"]["x"]
    assert len(x) % 4 == 3  # 32 bytes
    for bad in (_noncanonical(x), x + "=", x[:5] + "!" + x[5:]):
        forged = _with_header(token, {"epk": {**header["epk"], "x": bad}})
        _refused(lambda f=forged: jose.decrypt(f, keys, CTY), bad)
    for name in ("apu", "apv"):
        forged = _with_header(token, {name: "QR"})
        _refused(lambda f=forged: jose.decrypt(f, keys, CTY), "QR")


# --- SD-JWT disclosures -------------------------------------------------------------------


def _issued_with_a_partial_last_quantum(sig: OKPKey) -> sdjwt.SdJwt:
    """An SD-JWT whose one disclosure leaves 2 or 3 characters in its last quantum (the salt
    is random but of fixed length, so the value's length decides)."""
    for n in range(8):
        issued = sdjwt.issue({"iss": "police"}, {"field": "x" * n}, sig)
        if len(issued.disclosures[0].encoded) % 4 in (2, 3):
            return issued
    raise AssertionError("no disclosure with a partial last quantum")


def test_disclosures_are_strict_base64url(sig: OKPKey) -> None:
    issued = _issued_with_a_partial_last_quantum(sig)
    good = issued.disclosures[0]
    assert sdjwt.Disclosure.decode(good.encoded) == good
    lookup = {str(sig.kid): sig}.__getitem__
    assert sdjwt.verify(issued.serialize(), lookup).claims == {"field": good.value}
    spoilt = _spoilt(good.encoded)
    assert "non-canonical last character" in spoilt
    for bad in spoilt.values():
        _refused(lambda b=bad: sdjwt.Disclosure.decode(b), bad)
        token = f"{issued.jwt}~{bad}~"
        _refused(lambda t=token: sdjwt.SdJwt.parse(t), bad)
        _refused(lambda t=token: sdjwt.verify(t, lookup), bad)
