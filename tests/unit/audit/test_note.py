"""Signed notes, checkpoints and cosignatures against the published C2SP/Go vectors."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.merkle import leaf_hash, root_from_leaf_hashes
from broker.audit.note import (
    COSIGNATURE_V1_TYPE,
    ED25519_TYPE,
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteError,
    NoteSigner,
    NoteVerifier,
    key_id,
    open_note,
    private_key_seed,
    public_key_raw,
    sign_note,
)

VECTORS = Path(__file__).resolve().parents[2] / "assets" / "vectors" / "signed-note"
_TEXT = (VECTORS / "vectors.md").read_text(encoding="utf-8")
SPEC_VKEY, NEUMANN_VKEY = re.findall(r"^vkey: `([^`]+)`$", _TEXT, flags=re.MULTILINE)
(NEUMANN_SKEY,) = re.findall(r"^skey: `([^`]+)`$", _TEXT, flags=re.MULTILINE)
SPEC_NOTE, NEUMANN_NOTE, CHECKPOINT_BODY = re.findall(r"^```\n(.*?)^```$", _TEXT, re.M | re.S)

NEUMANN_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
# The 8-leaf tree of ../merkle/README.md, built from its d(0)..d(7).
EIGHT_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
ORIGIN = "example.org/referral-audit"


def _witness(name: str = "witness.example/w1", seed: int = 1) -> CosignatureSigner:
    return CosignatureSigner(name, Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32))


def _checkpoint_body(size: int = 8) -> str:
    root = root_from_leaf_hashes([leaf_hash(d) for d in EIGHT_LEAVES[:size]])
    return Checkpoint(ORIGIN, size, root).body()


def _replace_sig_field(line: str, transform: bytes) -> str:
    """Rebuild a signature line with its decoded field XORed by ``transform``."""
    prefix, b64 = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    for i, byte in enumerate(transform):
        raw[i] ^= byte
    return f"{prefix} {base64.b64encode(bytes(raw)).decode()}"


def test_vectors_file_parsed() -> None:
    assert SPEC_NOTE.startswith("This is an example message.\n\n\u2014 example.com/foo ")
    assert NEUMANN_NOTE.startswith(NEUMANN_TEXT + "\n\u2014 PeterNeumann ")
    assert CHECKPOINT_BODY.startswith(ORIGIN + "\n8\n")


def test_spec_example_note_verifies() -> None:
    verifier = NoteVerifier.from_vkey(SPEC_VKEY)
    assert verifier.name == "example.com/foo"
    assert verifier.key_id.hex() == "530d903a"
    assert verifier.vkey == SPEC_VKEY
    assert open_note(SPEC_NOTE, [verifier]) == (
        "This is an example message.\n",
        ["example.com/foo"],
    )


def test_neumann_note_verifies() -> None:
    verifier = NoteVerifier.from_vkey(NEUMANN_VKEY)
    assert open_note(NEUMANN_NOTE, [verifier]) == (NEUMANN_TEXT, ["PeterNeumann"])


def test_signing_with_published_skey_reproduces_published_line() -> None:
    signer = NoteSigner.from_skey(NEUMANN_SKEY)
    assert signer.name == "PeterNeumann"
    assert signer.key_id.hex() == "c74f20a3"
    assert signer.vkey == NEUMANN_VKEY
    assert signer.skey == NEUMANN_SKEY
    published_line = NEUMANN_NOTE.split("\n\n", 1)[1].rstrip("\n")
    assert signer.sign(NEUMANN_TEXT) == published_line
    assert sign_note(NEUMANN_TEXT, [signer]) == NEUMANN_NOTE


def test_key_id_formula_and_raw_key_helpers() -> None:
    signer = NoteSigner.from_skey(NEUMANN_SKEY)
    raw = public_key_raw(signer.private_key.public_key())
    assert len(raw) == 32
    assert len(private_key_seed(signer.private_key)) == 32
    assert key_id("PeterNeumann", ED25519_TYPE, raw).hex() == "c74f20a3"
    assert key_id("PeterNeumann", COSIGNATURE_V1_TYPE, raw) != signer.key_id
    assert key_id("PeterNeumann2", ED25519_TYPE, raw) != signer.key_id


def test_tampered_text_is_rejected() -> None:
    verifier = NoteVerifier.from_vkey(NEUMANN_VKEY)
    tampered = NEUMANN_NOTE.replace("don't", "do")
    with pytest.raises(NoteError, match="failed to verify"):
        open_note(tampered, [verifier])


def test_unknown_signatures_are_ignored_but_one_known_is_required() -> None:
    neumann = NoteVerifier.from_vkey(NEUMANN_VKEY)
    other = NoteSigner("other.example/log", Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    note = NEUMANN_NOTE + other.sign(NEUMANN_TEXT) + "\n"
    assert open_note(note, [neumann]) == (NEUMANN_TEXT, ["PeterNeumann"])
    assert open_note(note, [neumann, other.verifier()])[1] == ["PeterNeumann", "other.example/log"]
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(note, [NoteVerifier.from_vkey(SPEC_VKEY)])
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(NEUMANN_NOTE, [])


def test_same_name_different_key_is_unknown_not_trusted() -> None:
    impostor = NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(b"\x09" * 32))
    forged = sign_note(NEUMANN_TEXT.replace("don't", "do"), [impostor])
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(forged, [NoteVerifier.from_vkey(NEUMANN_VKEY)])


def test_bad_signature_by_known_key_rejects_even_with_a_good_one() -> None:
    signer = NoteSigner.from_skey(NEUMANN_SKEY)
    good_line = signer.sign(NEUMANN_TEXT)
    bad_line = _replace_sig_field(good_line, bytes(4) + b"\x01")  # flip a signature bit
    note = NEUMANN_TEXT + "\n" + good_line + "\n" + bad_line + "\n"
    with pytest.raises(NoteError, match="failed to verify"):
        open_note(note, [signer.verifier()])


@pytest.mark.parametrize(
    "note",
    [
        "no blank line\n\u2014 PeterNeumann AAAAAAA=\n",
        NEUMANN_TEXT + "\n",
        NEUMANN_NOTE.rstrip("\n"),
        NEUMANN_NOTE.replace("cryptography", "crypto\tgraphy"),
        # The rest are the valid note plus one bad line, so only the format check can fail them.
        NEUMANN_NOTE + "- other.example AAAAAAA=\n",
        NEUMANN_NOTE + "\u2014 other.example\n",
        NEUMANN_NOTE + "\u2014 other+example AAAAAAA=\n",
        NEUMANN_NOTE + "\u2014 other.example AAAAAAA!\n",
        NEUMANN_NOTE + "\u2014 PeterNeumann x08g\n",
        NEUMANN_NOTE + "\u2014 other.example AAAAAAA=\n" * 100,
    ],
    ids=[
        "no-blank-line",
        "no-signatures",
        "no-final-newline",
        "control-character",
        "hyphen-not-em-dash",
        "no-signature-field",
        "plus-in-name",
        "bad-base64",
        "signature-too-short",
        "too-many-signatures",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(NoteError):
        open_note(note, [NoteVerifier.from_vkey(NEUMANN_VKEY)])


def test_up_to_the_signature_cap_is_accepted() -> None:
    note = NEUMANN_NOTE + "\u2014 other.example AAAAAAA=\n" * 99
    assert open_note(note, [NoteVerifier.from_vkey(NEUMANN_VKEY)])[1] == ["PeterNeumann"]


@pytest.mark.parametrize(
    ("vkey", "message"),
    [
        (NEUMANN_VKEY.replace("c74f20a3", "c74f20a4"), "id does not match"),
        (NEUMANN_VKEY.replace("+ARpc", "+AhPc"), "signature type|id does not match"),
        (NEUMANN_VKEY.replace("+ARpc", "+A@pc"), "base64"),
        ("PeterNeumann+c74f20a3", "form"),
        (NEUMANN_VKEY.replace("c74f20a3", "c74f20"), "8 hex"),
        (NEUMANN_VKEY.replace("W", ""), "length|base64"),
    ],
    ids=["wrong-id", "wrong-type", "bad-base64", "missing-key", "short-id", "short-key"],
)
def test_bad_vkeys_are_rejected(vkey: str, message: str) -> None:
    with pytest.raises(NoteError, match=message):
        NoteVerifier.from_vkey(vkey)


def test_bad_skeys_are_rejected() -> None:
    with pytest.raises(NoteError, match="PRIVATE"):
        NoteSigner.from_skey(NEUMANN_SKEY.replace("PRIVATE+KEY+", ""))
    with pytest.raises(NoteError, match="id does not match"):
        NoteSigner.from_skey(NEUMANN_SKEY.replace("c74f20a3", "00000000"))


def test_sign_note_rejects_invalid_text_and_names() -> None:
    signer = NoteSigner.from_skey(NEUMANN_SKEY)
    with pytest.raises(NoteError, match="newline"):
        sign_note("no final newline", [signer])
    with pytest.raises(NoteError, match="control"):
        sign_note("bell\a\n", [signer])
    with pytest.raises(NoteError, match="signer"):
        sign_note("fine\n", [])
    with pytest.raises(NoteError, match="key name"):
        NoteSigner("has space", signer.private_key)
    with pytest.raises(NoteError, match="0x01"):
        NoteSigner("ok", signer.private_key, COSIGNATURE_V1_TYPE)


def test_note_text_may_contain_blank_lines() -> None:
    signer = NoteSigner.from_skey(NEUMANN_SKEY)
    text = "para one\n\npara two\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier()]) == (text, ["PeterNeumann"])


def test_checkpoint_body_formats_exactly() -> None:
    assert _checkpoint_body(8) == CHECKPOINT_BODY
    parsed = Checkpoint.parse(CHECKPOINT_BODY)
    assert parsed.origin == ORIGIN
    assert parsed.size == 8
    assert parsed.root_hash.hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert parsed.extensions == ()
    with_ext = Checkpoint(ORIGIN, 8, parsed.root_hash, ("ext one",))
    assert with_ext.body() == CHECKPOINT_BODY + "ext one\n"
    assert Checkpoint.parse(with_ext.body()) == with_ext


@pytest.mark.parametrize(
    "body",
    [
        CHECKPOINT_BODY.replace("\n8\n", "\n08\n"),
        CHECKPOINT_BODY.replace("\n8\n", "\n-8\n"),
        CHECKPOINT_BODY.replace("\n8\n", "\n+8\n"),
        CHECKPOINT_BODY.replace("\n8\n", "\n18446744073709551616\n"),
        CHECKPOINT_BODY.replace("Qyg=", "Qyh="),
        CHECKPOINT_BODY.replace("XcnaeacG", "XcnaeacGAA"),
        CHECKPOINT_BODY.replace("Xcna", "Xc!a"),
        CHECKPOINT_BODY.rstrip("\n"),
        ORIGIN + "\n8\n",
        "\n" + CHECKPOINT_BODY.split("\n", 1)[1],
        CHECKPOINT_BODY + "\n",
    ],
    ids=[
        "leading-zero",
        "negative",
        "plus-sign",
        "size-over-u64",
        "noncanonical-base64",
        "wrong-hash-length",
        "bad-base64",
        "no-final-newline",
        "missing-root",
        "empty-origin",
        "empty-extension",
    ],
)
def test_bad_checkpoints_are_rejected(body: str) -> None:
    with pytest.raises(NoteError):
        Checkpoint.parse(body)


def test_cosignature_round_trip() -> None:
    witness = _witness()
    body = _checkpoint_body()
    line = witness.cosign(body, 1_679_315_147)
    raw = base64.b64decode(line.rsplit(" ", 1)[1])
    assert line.startswith("\u2014 witness.example/w1 ")
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == key_id(
        "witness.example/w1", COSIGNATURE_V1_TYPE, public_key_raw(witness.private_key.public_key())
    )
    assert raw[4:12] == (1_679_315_147).to_bytes(8, "big")
    # The signed message is exactly the cosignature/v1 header, time line and body.
    message = f"cosignature/v1\ntime 1679315147\n{body}".encode()
    witness.private_key.public_key().verify(raw[12:], message)

    verifier = CosignatureVerifier.from_vkey(witness.vkey)
    assert verifier.verify_cosignature(body, line) == 1_679_315_147
    log = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(b"\x05" * 32))
    note = sign_note(body, [log]) + line + "\n"
    assert open_note(note, [log.verifier(), verifier]) == (body, [ORIGIN, "witness.example/w1"])


def test_cosignature_rejects_tampering() -> None:
    witness = _witness()
    verifier = witness.verifier()
    body = _checkpoint_body()
    line = witness.cosign(body, 1_700_000_000)
    with pytest.raises(NoteError, match="failed to verify"):
        verifier.verify_cosignature(_checkpoint_body(7), line)
    with pytest.raises(NoteError, match="failed to verify"):
        verifier.verify_cosignature(body, _replace_sig_field(line, bytes(11) + b"\x01"))
    with pytest.raises(NoteError, match="key id"):
        _witness(seed=2).verifier().verify_cosignature(body, line)
    with pytest.raises(NoteError, match="key id"):
        verifier.verify_cosignature(body, _replace_sig_field(line, b"\x01"))
    with pytest.raises(NoteError, match="base64"):
        verifier.verify_cosignature(body, line[:-3] + "!!=")
    # the same bytes with a non-zero unused bit before the padding: another spelling, refused
    encoded = line.rsplit(" ", 1)[1]
    assert encoded.endswith("==")  # 76 bytes: 4 bits of the last character unused
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    respelt = encoded[:-3] + alphabet[alphabet.index(encoded[-3]) + 1] + "=="
    assert base64.b64decode(respelt, validate=True) == base64.b64decode(encoded)
    with pytest.raises(NoteError, match="not canonical base64"):
        verifier.verify_cosignature(body, line[: -len(encoded)] + respelt)
    with pytest.raises(NoteError, match="witness name"):
        _witness("witness.example/w2").verifier().verify_cosignature(body, line)
    # A plain Ed25519 note verifier for the same key must not accept a cosignature.
    as_note_key = NoteVerifier(witness.name, witness.private_key.public_key())
    with pytest.raises(NoteError, match="no signature by a known key"):
        open_note(body + "\n" + line + "\n", [as_note_key])
    with pytest.raises(NoteError, match="failed to verify"):
        open_note(_checkpoint_body(7) + "\n" + line + "\n", [verifier])


def test_cosign_refuses_bad_input() -> None:
    witness = _witness()
    with pytest.raises(NoteError, match="timestamp"):
        witness.cosign(_checkpoint_body(), 1 << 63)
    with pytest.raises(NoteError, match="timestamp"):
        witness.cosign(_checkpoint_body(), -1)
    with pytest.raises(NoteError):
        witness.cosign("not a checkpoint\n", 0)
    with pytest.raises(NoteError, match="signature type"):
        CosignatureVerifier.from_vkey(NEUMANN_VKEY)
    with pytest.raises(NoteError, match="signature type"):
        NoteVerifier.from_vkey(witness.vkey)
