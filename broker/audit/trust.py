"""What a verifier of the audit log pins: the log's keys, the witnesses' keys, the quorum.

Verification trusts nothing the verified material carries. A relying party (an IG officer
of another agency, a regulator, a court) keeps a trust file that it received once, through
a channel of its own, and updates when told of a key rotation (``masp audit trust`` writes
one from the operator's side):

    # comments and blank lines are ignored
    log <vkey>                     the log's original key (or any key it has had)
    log <vkey> since <seq>         a key the log rotated to at entry <seq>
    witness <vkey>                 a witness's cosignature/v1 key
    quorum <n>                     cosignatures the newest checkpoint must carry

``since`` makes a pinned newer key binding: a log that reaches entry ``seq`` must hand over
to that key there, so a copy of the log forked before the rotation (say by whoever holds a
stolen old key) fails verification even though the old key signed it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from broker.audit.note import CosignatureVerifier, NoteError, NoteVerifier, public_key_raw


class TrustInvalid(ValueError):
    """A trust file or pinned key is malformed; the message names the line, never a key."""


@dataclass(frozen=True)
class PinnedLogKey:
    verifier: NoteVerifier
    #: the seq of the rotation entry that introduced this key, when the pin says so
    since: int | None = None

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id


@dataclass(frozen=True)
class Trust:
    log: tuple[PinnedLogKey, ...]
    witnesses: tuple[CosignatureVerifier, ...] = ()
    #: cosignatures by ``witnesses`` the newest checkpoint must carry (0: none required)
    quorum: int = 0

    def __post_init__(self) -> None:
        if not self.log:
            raise TrustInvalid("no log key is pinned")
        if len({k.verifier.name for k in self.log}) != 1:
            raise TrustInvalid("the pinned log keys name more than one log")
        if len({k.key_id for k in self.log}) != len(self.log):
            raise TrustInvalid("a log key is pinned twice")
        if len({(w.name, w.key_id) for w in self.witnesses}) != len(self.witnesses):
            raise TrustInvalid("a witness key is pinned twice")
        if len({public_key_raw(w.public_key) for w in self.witnesses}) != len(self.witnesses):
            # one key holder would count as several witnesses toward the quorum
            raise TrustInvalid("the same key is pinned for two witnesses")
        # a witness pinned with several keys (it rotated) is still one witness
        witnesses = len({w.name for w in self.witnesses})
        if self.quorum < 0 or self.quorum > witnesses:
            raise TrustInvalid(f"a quorum of {self.quorum} needs at least that many witness keys, one "
                               f"per witness ({witnesses} witnesses pinned)")

    @property
    def origin(self) -> str:
        return self.log[0].verifier.name

    @classmethod
    def of(cls, log: list[str] | tuple[str, ...], witnesses: list[str] | tuple[str, ...] = (),
           quorum: int | None = None) -> Trust:
        """From vkey strings (``--vkey`` / ``--witness-vkey``); quorum defaults to every witness
        up to two."""
        keys = tuple(PinnedLogKey(_log_key(v, f"log key {i + 1}")) for i, v in enumerate(log))
        pinned = tuple(_witness_key(v, f"witness key {i + 1}") for i, v in enumerate(witnesses))
        return cls(keys, pinned, min(2, len({w.name for w in pinned})) if quorum is None else quorum)

    @classmethod
    def parse(cls, text: str, where: str = "trust file") -> Trust:
        logs: list[PinnedLogKey] = []
        witnesses: list[CosignatureVerifier] = []
        quorum: int | None = None
        # lines end at "\n" only: ``splitlines`` also breaks at U+2028, form feed and more,
        # which an editor shows inside a comment, and would pin a key written after one
        for number, line in enumerate(text.split("\n"), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            at = f"{where} line {number}"
            match words:
                case ["log", vkey]:
                    logs.append(PinnedLogKey(_log_key(vkey, at)))
                case ["log", vkey, "since", seq] if _DECIMAL.fullmatch(seq):
                    logs.append(PinnedLogKey(_log_key(vkey, at), int(seq)))
                case ["witness", vkey]:
                    witnesses.append(_witness_key(vkey, at))
                case ["quorum", n] if _DECIMAL.fullmatch(n) and quorum is None:
                    quorum = int(n)
                case _:
                    raise TrustInvalid(f"{at}: expected `log VKEY [since SEQ]`, `witness VKEY` "
                                       "or `quorum N` (once)")
        default = min(2, len({w.name for w in witnesses}))
        return cls(tuple(logs), tuple(witnesses), default if quorum is None else quorum)

    @classmethod
    def load(cls, path: Path) -> Trust:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrustInvalid(f"{path}: cannot be read ({type(exc).__name__})") from None
        return cls.parse(text, str(path))

    def render(self, comment: str = "") -> str:
        lines = [f"# {line}" for line in comment.splitlines()]
        for key in self.log:
            since = f" since {key.since}" if key.since is not None else ""
            lines.append(f"log {key.verifier.vkey}{since}")
        lines.extend(f"witness {w.vkey}" for w in self.witnesses)
        lines.append(f"quorum {self.quorum}")
        return "\n".join(lines) + "\n"


_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


def _log_key(vkey: str, at: str) -> NoteVerifier:
    try:
        return NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise TrustInvalid(f"{at}: not a log verifier key ({exc})") from None


def _witness_key(vkey: str, at: str) -> CosignatureVerifier:
    try:
        return CosignatureVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise TrustInvalid(f"{at}: not a cosignature/v1 witness key ({exc})") from None


def key_label(verifier: NoteVerifier | CosignatureVerifier) -> str:
    """How a report names a key: ``name+keyid``, the vkey's public prefix."""
    return f"{verifier.name}+{verifier.key_id.hex()}"


__all__ = ["PinnedLogKey", "Trust", "TrustInvalid", "key_label"]
