"""The statement that hands the audit log from one key to the next.

A rotation is an audit entry (kind ``log_key_rotated``) holding a C2SP signed note:

    <origin>
    masp-log-key-rotation/v1
    size <n>
    root <base64 root hash of the first n entries>
    old <vkey of the key being replaced>
    new <vkey of the key taking over>
    retire <unix seconds after which the old key stops co-signing checkpoints>

signed by the old key (it authorises the new one) and by the new key (it proves the new key
is held, and that its holder vouches for the log's first ``n`` entries). ``n`` is the
entry's own seq. The second line keeps the note from ever parsing as a checkpoint (whose
second line is a decimal size) or a cosigned message (which starts ``cosignature/v1``).

Verification (``broker/audit/verify.py``) follows these statements from a pinned key, in
either direction: a pinned old key authorises the new one; a pinned new key vouches for its
predecessor and for every entry before the statement.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from broker.audit.note import NoteError, NoteSigner, NoteVerifier, open_note, sign_note

HEADER = "masp-log-key-rotation/v1"
_LINES = re.compile(
    r"(?P<origin>[^\n]+)\n" + re.escape(HEADER) + r"\n"
    r"size (?P<size>0|[1-9][0-9]{0,18})\n"
    r"root (?P<root>[A-Za-z0-9+/]{43}=)\n"
    r"old (?P<old>[^\n ]+)\n"
    r"new (?P<new>[^\n ]+)\n"
    r"retire (?P<retire>0|[1-9][0-9]{0,18})\n")


@dataclass(frozen=True)
class KeyRotation:
    origin: str
    size: int
    root_hash: bytes
    old: NoteVerifier
    new: NoteVerifier
    retire_at: datetime

    def text(self) -> str:
        return (f"{self.origin}\n{HEADER}\nsize {self.size}\n"
                f"root {base64.b64encode(self.root_hash).decode('ascii')}\n"
                f"old {self.old.vkey}\nnew {self.new.vkey}\nretire {int(self.retire_at.timestamp())}\n")


def sign_rotation(origin: str, size: int, root_hash: bytes, old: NoteSigner, new: NoteSigner,
                  retire_at: datetime) -> str:
    """The signed statement: the old key first, then the new one."""
    rotation = KeyRotation(origin, size, root_hash, old.verifier(), new.verifier(), retire_at)
    return sign_note(rotation.text(), [old, new])


def open_rotation(note: str) -> KeyRotation:
    """Parse a rotation statement and check it is signed by both keys it names.

    Trusts nothing: the caller decides whether the old or the new key is one it already
    trusts. Raises ``NoteError`` naming what is wrong.
    """
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("key rotation has no signatures")
    m = _LINES.fullmatch(note[: split + 1])
    if m is None:
        raise NoteError("key rotation statement is malformed")
    old = NoteVerifier.from_vkey(m["old"])
    new = NoteVerifier.from_vkey(m["new"])
    origin = m["origin"]
    if old.name != origin or new.name != origin:
        raise NoteError("key rotation names a key of another log")
    if old.key_id == new.key_id:
        raise NoteError("key rotation replaces a key with itself")
    root = base64.b64decode(m["root"], validate=True)
    if base64.b64encode(root).decode("ascii") != m["root"]:
        raise NoteError("key rotation root is not canonical base64")
    for verifier, which in ((old, "old"), (new, "new")):
        try:
            open_note(note, [verifier])
        except NoteError:
            raise NoteError(f"key rotation is not signed by the {which} key it names") from None
    try:
        retire_at = datetime.fromtimestamp(int(m["retire"]), UTC)
    except (OverflowError, OSError, ValueError):  # 19 digits reach past any calendar
        raise NoteError("key rotation retire time is out of range") from None
    return KeyRotation(origin, int(m["size"]), root, old, new, retire_at)
