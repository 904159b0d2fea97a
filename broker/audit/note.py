"""C2SP signed notes, tlog checkpoints and Ed25519 cosignatures.

Implements https://c2sp.org/signed-note, https://c2sp.org/tlog-checkpoint and
the Ed25519 ``cosignature/v1`` type of https://c2sp.org/tlog-cosignature so the
audit log's signed tree heads can be checked by stock transparency tooling
(Go ``sumdb/note``, witnesses) instead of a bespoke format.

Keys are ``cryptography`` Ed25519 objects; the text encodings (vkey / skey) are
the Go ``sumdb/note`` ones so keys can be shared with that ecosystem.

Signature lines are returned without their trailing newline; ``sign_note`` adds
one per line when it assembles a note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ED25519_TYPE = 0x01
COSIGNATURE_V1_TYPE = 0x04
MAX_SIGNATURES = 100
"""Go's cap; the spec requires accepting at least 16 and asks for some limit."""
MAX_NOTE_BYTES = 1 << 20
"""Bounds parsing work on untrusted input; checkpoints are a few hundred bytes."""

_SIG_PREFIX = "\u2014 "
_COSIG_HEADER = "cosignature/v1\n"
_MAX_TIMESTAMP = (1 << 63) - 1
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_HEX_ID_RE = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note, key string, checkpoint or signature is malformed or does not verify.

    Messages say which check failed and never include key material.
    """


def key_id(name: str, sig_type: int, public_key_raw: bytes) -> bytes:
    """SHA-256(name || 0x0A || type || public key)[:4], the spec's recommended id.

    Including the type byte lets one Ed25519 key serve different signature types
    without their signatures being confused.
    """
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key_raw
    ).digest()[:4]


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    """The 32-byte RFC 8032 encoding used in key ids and vkeys."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_key_seed(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte RFC 8032 seed used in skeys."""
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Standard base64, and only its canonical spelling: ``validate`` refuses characters outside
    the alphabet but not non-zero unused bits in the last character, which would let one
    signature be posted (and stored) under several spellings (as in ``proof.py``)."""
    try:
        value = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError(f"{what} is not valid base64") from None
    if _b64(value) != text:
        raise NoteError(f"{what} is not canonical base64")
    return value


def _check_name(name: str) -> None:
    """Names are space-free so signature lines split unambiguously, '+'-free for vkeys."""
    if (
        not isinstance(name, str)
        or not name
        or "+" in name
        or any(ch.isspace() or ord(ch) < 0x20 for ch in name)
    ):
        raise NoteError("key name must be non-empty with no spaces, '+' or control characters")


def _check_text(text: str, what: str) -> None:
    """Spec: valid UTF-8, no ASCII control characters other than newline."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteError(f"{what} is not valid UTF-8") from None
    if len(encoded) > MAX_NOTE_BYTES:
        raise NoteError(f"{what} is too large")
    if any(ch != "\n" and ord(ch) < 0x20 for ch in text):
        raise NoteError(f"{what} contains a control character")


def _parse_key_string(key: str, what: str) -> tuple[str, bytes, int, bytes]:
    """Split ``name+hexid+base64(type||key)``; returns name, id, type, key bytes.

    Split on '+' at most twice: the base64 part may itself contain '+'.
    """
    parts = key.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{what} does not have the form name+id+key")
    name, hex_id, b64 = parts
    _check_name(name)
    if not _HEX_ID_RE.fullmatch(hex_id):
        raise NoteError(f"{what} key id is not 8 hex digits")
    material = _unb64(b64, what)
    if len(material) != 33:
        raise NoteError(f"{what} key material has the wrong length")
    return name, bytes.fromhex(hex_id), material[0], material[1:]


class Verifier(Protocol):
    """What ``open_note`` needs from a verifier: its (name, key id) and a check."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: str, sig: bytes) -> bool: ...


def _vkey(name: str, sig_type: int, public_key: Ed25519PublicKey) -> str:
    raw = public_key_raw(public_key)
    return f"{name}+{key_id(name, sig_type, raw).hex()}+{_b64(bytes([sig_type]) + raw)}"


def _public_from_vkey(vkey: str, sig_type: int) -> tuple[str, Ed25519PublicKey]:
    name, kid, found_type, raw = _parse_key_string(vkey, "verifier key")
    if found_type != sig_type:
        raise NoteError("verifier key has an unsupported signature type")
    if kid != key_id(name, found_type, raw):
        raise NoteError("verifier key id does not match its key")
    return name, Ed25519PublicKey.from_public_bytes(raw)


def _ed25519_ok(key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class NoteSigner:
    """An Ed25519 (type 0x01) note signer."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)
    sig_type: int = ED25519_TYPE

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type != ED25519_TYPE:
            # The type byte selects the signed message; only plain Ed25519 is
            # implemented here (cosignatures have their own class).
            raise NoteError("NoteSigner only supports signature type 0x01")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, public_key_raw(self.private_key.public_key()))

    @property
    def vkey(self) -> str:
        """The shareable verifier key string for this signer."""
        return _vkey(self.name, self.sig_type, self.private_key.public_key())

    @property
    def skey(self) -> str:
        """The Go ``sumdb/note`` private key string; secret, persist with care."""
        seed = private_key_seed(self.private_key)
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(bytes([self.sig_type]) + seed)}"

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.private_key.public_key(), self.sig_type)

    @classmethod
    def from_skey(cls, skey: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01||seed)>``, checking the id."""
        if not skey.startswith("PRIVATE+KEY+"):
            raise NoteError("signer key must start with PRIVATE+KEY+")
        name, kid, found_type, seed = _parse_key_string(skey[len("PRIVATE+KEY+") :], "signer key")
        if found_type != ED25519_TYPE:
            raise NoteError("signer key has an unsupported signature type")
        private_key = Ed25519PrivateKey.from_private_bytes(seed)
        signer = cls(name, private_key, found_type)
        if signer.key_id != kid:
            raise NoteError("signer key id does not match its key")
        return signer

    def sign(self, text: str) -> str:
        """Return the signature line (no trailing newline) over ``text``."""
        _check_text(text, "note text")
        signature = self.private_key.sign(text.encode("utf-8"))
        return f"{_SIG_PREFIX}{self.name} {_b64(self.key_id + signature)}"


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 (type 0x01) note verifier."""

    name: str
    public_key: Ed25519PublicKey
    sig_type: int = ED25519_TYPE

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.sig_type != ED25519_TYPE:
            raise NoteError("NoteVerifier only supports signature type 0x01")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.sig_type, public_key_raw(self.public_key))

    @property
    def vkey(self) -> str:
        return _vkey(self.name, self.sig_type, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex id>+<base64(0x01||pub)>``, checking the id."""
        name, public_key = _public_from_vkey(vkey, ED25519_TYPE)
        return cls(name, public_key)

    def verify(self, text: str, sig: bytes) -> bool:
        """Check a bare 64-byte Ed25519 signature (key id already stripped)."""
        return len(sig) == 64 and _ed25519_ok(self.public_key, sig, text.encode("utf-8"))


def _parse_sig_line(line: str) -> tuple[str, bytes]:
    """Split ``— <name> <base64>`` into the name and the decoded key id || signature."""
    if not line.startswith(_SIG_PREFIX):
        raise NoteError("signature line does not start with an em dash and space")
    name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not b64:
        raise NoteError("signature line has no signature")
    _check_name(name)
    raw = _unb64(b64, "signature")
    if len(raw) < 5:
        raise NoteError("signature is too short")
    return name, raw


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Assemble text, blank line and one signature line per signer."""
    if not text.endswith("\n"):
        raise NoteError("note text must end with a newline")
    _check_text(text, "note text")
    if not signers:
        raise NoteError("a note needs at least one signer")
    return text + "\n" + "".join(signer.sign(text) + "\n" for signer in signers)


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """Verify a signed note; return its text and the names that verified it.

    Follows the spec's rules: signatures whose (name, key id) match no verifier
    are ignored (they may be other witnesses or rotated keys), any matching
    signature that fails rejects the whole note, and at least one must verify.
    Unlike Go, repeated signatures by a known key are all checked, not skipped.
    """
    text, found = open_note_keys(note, verifiers)
    names: list[str] = []
    for verifier in found:
        if verifier.name not in names:
            names.append(verifier.name)
    return text, names


def _split_note(note: str) -> tuple[str, list[str]]:
    _check_text(note, "note")
    if not note.endswith("\n"):
        raise NoteError("note must end with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    lines = sig_block[:-1].split("\n") if sig_block else []
    if not lines:
        raise NoteError("note has no signature lines")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError("note has too many signatures")
    return text, lines


def open_note_keys(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[Verifier]]:
    """``open_note``, returning the verifiers whose signatures verified (each once, in the
    note's order): several keys of one name (a log during a key rotation) stay apart."""
    known: dict[tuple[str, bytes], Verifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, verifier.key_id)
        if ident in known and known[ident] != verifier:
            raise NoteError("two verifiers share a key name and key id")
        known[ident] = verifier

    text, lines = _split_note(note)
    verified: list[Verifier] = []
    for line in lines:
        name, raw = _parse_sig_line(line)
        match = known.get((name, raw[:4]))
        if match is None:
            continue
        if not match.verify(text, raw[4:]):
            raise NoteError(f"a signature by the known key {name}+{raw[:4].hex()} failed to verify")
        if match not in verified:
            verified.append(match)
    if not verified:
        raise NoteError("no signature by a known key")
    return text, verified


def note_signatures(note: str) -> tuple[str, list[tuple[str, bytes, str]]]:
    """Split a signed note into its text and its signature lines, checking their syntax only.

    Each line comes as (key name, key id || signature, the line without its newline); nothing
    is verified: for parsing untrusted input strictly before deciding whom to ask to verify it.
    """
    text, lines = _split_note(note)
    return text, [(*_parse_sig_line(line), line) for line in lines]


def parse_signature_line(line: str) -> tuple[str, bytes]:
    """``— <name> <base64>`` (no newline) as its key name and key id || signature (syntax only)."""
    return _parse_sig_line(line)


def signature_key_ids(note: str, name: str) -> list[bytes]:
    """The key ids of the signature lines by ``name`` (unverified: for routing, not trust)."""
    _, lines = note_signatures(note)
    return list(dict.fromkeys(raw[:4] for signer, raw, _ in lines if signer == name))


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint note body: origin, tree size, root hash, extensions."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for line in (self.origin, *self.extensions):
            if not line or "\n" in line:
                raise NoteError("checkpoint lines must be non-empty single lines")
            _check_text(line, "checkpoint line")
        if isinstance(self.size, bool) or not 0 <= self.size < (1 << 64):
            raise NoteError("checkpoint size must be an unsigned 64-bit integer")
        if len(self.root_hash) != 32:
            raise NoteError("checkpoint root hash must be 32 bytes")

    def body(self) -> str:
        lines = [self.origin, str(self.size), _b64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly, so one checkpoint has one encoding."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError("checkpoint needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise NoteError("checkpoint size is not a canonical decimal")
        root_hash = _unb64(root_text, "checkpoint root hash")
        if _b64(root_hash) != root_text:
            raise NoteError("checkpoint root hash is not canonical base64")
        return cls(origin, int(size_text), root_hash, tuple(extensions))


def _cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    return f"{_COSIG_HEADER}time {timestamp}\n{checkpoint_body}".encode()


@dataclass(frozen=True)
class CosignatureSigner:
    """An Ed25519 ``cosignature/v1`` (type 0x04) witness signer."""

    name: str
    private_key: Ed25519PrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def key_id(self) -> bytes:
        raw = public_key_raw(self.private_key.public_key())
        return key_id(self.name, COSIGNATURE_V1_TYPE, raw)

    @property
    def vkey(self) -> str:
        return _vkey(self.name, COSIGNATURE_V1_TYPE, self.private_key.public_key())

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.private_key.public_key())

    def cosign(self, checkpoint_body: str, timestamp: int) -> str:
        """Return the cosignature line (no trailing newline) for a checkpoint body.

        The body is parsed first so a witness never signs something that is
        not a well-formed checkpoint.
        """
        Checkpoint.parse(checkpoint_body)
        if isinstance(timestamp, bool) or not 0 <= timestamp <= _MAX_TIMESTAMP:
            raise NoteError("cosignature timestamp must be in 0..2^63-1")
        signature = self.private_key.sign(_cosigned_message(checkpoint_body, timestamp))
        field_bytes = self.key_id + timestamp.to_bytes(8, "big") + signature
        return f"{_SIG_PREFIX}{self.name} {_b64(field_bytes)}"


@dataclass(frozen=True)
class CosignatureVerifier:
    """An Ed25519 ``cosignature/v1`` (type 0x04) witness verifier.

    ``verify`` fits the ``open_note`` protocol; ``verify_cosignature`` checks a
    single line and also returns the witness's timestamp.
    """

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        _check_name(self.name)

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, COSIGNATURE_V1_TYPE, public_key_raw(self.public_key))

    @property
    def vkey(self) -> str:
        return _vkey(self.name, COSIGNATURE_V1_TYPE, self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        name, public_key = _public_from_vkey(vkey, COSIGNATURE_V1_TYPE)
        return cls(name, public_key)

    def verify(self, text: str, sig: bytes) -> bool:
        """Check ``time(8, big-endian) || Ed25519 signature`` over the cosigned message."""
        if len(sig) != 8 + 64:
            return False
        timestamp = int.from_bytes(sig[:8], "big")
        if timestamp > _MAX_TIMESTAMP:
            return False
        return _ed25519_ok(self.public_key, sig[8:], _cosigned_message(text, timestamp))

    def verify_cosignature(self, checkpoint_body: str, signature_line: str) -> int:
        """Verify one cosignature line for a checkpoint body; return its timestamp."""
        name, raw = _parse_sig_line(signature_line)
        if name != self.name:
            raise NoteError("cosignature is not by this witness name")
        if raw[:4] != self.key_id:
            raise NoteError("cosignature key id does not match this witness")
        if not self.verify(checkpoint_body, raw[4:]):
            raise NoteError("cosignature failed to verify")
        return int.from_bytes(raw[4:12], "big")
