"""The statement that hands the audit log to its next key: both keys sign, nothing else passes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.key_rotation import HEADER, KeyRotation, open_rotation, sign_rotation
from broker.audit.note import Checkpoint, NoteError, NoteSigner, open_note

ORIGIN = "masp.audit/test"
ROOT = hashlib.sha256(b"tree").digest()
RETIRE = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def _key(name: str = ORIGIN) -> NoteSigner:
    return NoteSigner(name, Ed25519PrivateKey.generate())


def test_a_statement_signed_by_both_keys_opens() -> None:
    old, new = _key(), _key()
    note = sign_rotation(ORIGIN, 7, ROOT, old, new, RETIRE)
    rotation = open_rotation(note)
    assert (rotation.origin, rotation.size, rotation.root_hash) == (ORIGIN, 7, ROOT)
    assert (rotation.old.vkey, rotation.new.vkey, rotation.retire_at) == (old.vkey, new.vkey, RETIRE)
    assert note.split("\n")[1] == HEADER
    # a C2SP note: stock verifiers see both signatures under the origin's name
    assert open_note(note, [old.verifier(), new.verifier()])[1] == [ORIGIN]


def test_it_never_reads_as_a_checkpoint() -> None:
    note = sign_rotation(ORIGIN, 7, ROOT, _key(), _key(), RETIRE)
    with pytest.raises(NoteError):
        Checkpoint.parse(note.split("\n\n")[0] + "\n")


@pytest.mark.parametrize("which", ["old", "new"])
def test_a_missing_or_forged_signature_is_refused(which: str) -> None:
    old, new, other = _key(), _key(), _key()
    text = KeyRotation(ORIGIN, 7, ROOT, old.verifier(), new.verifier(), RETIRE).text()
    signers = [other if which == "old" else old, other if which == "new" else new]
    with pytest.raises(NoteError, match=f"not signed by the {which} key it names"):
        open_rotation(text + "\n" + "".join(s.sign(text) + "\n" for s in signers))


def test_malformed_statements_are_refused() -> None:
    old, new = _key(), _key()
    good = sign_rotation(ORIGIN, 7, ROOT, old, new, RETIRE)
    for bad, why in (
        (good.replace("size 7\n", "size 07\n"), "malformed"),
        (good.replace(f"{HEADER}\n", "masp-log-key-rotation/v2\n"), "malformed"),
        (good.split("\n\n")[0] + "\n", "no signatures"),
        (sign_rotation(ORIGIN, 7, ROOT, old, old, RETIRE), "with itself"),
        (sign_rotation(ORIGIN, 7, ROOT, _key("masp.audit/other"), new, RETIRE), "another log"),
    ):
        with pytest.raises(NoteError, match=why):
            open_rotation(bad)
