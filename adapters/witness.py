"""An agency as a witness of the broker's audit log.

Each run fetches the newest checkpoint, checks the broker's signature with the pinned log
key, checks it extends the last checkpoint this agency saw (RFC 6962 consistency proof),
records it under the adapter's home, and only then posts a ``cosignature/v1``. A broker
that presents a smaller tree (a restored database) or another history raises
``LogRollback`` / ``LogInconsistent`` and gets no cosignature.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.files import atomic_write
from broker import wire
from broker.audit.note import Checkpoint, CosignatureSigner, NoteError, NoteVerifier
from broker.audit.witness import append_cosignatures, check_advance, open_checkpoint, witness_name
from broker.clock import Clock
from broker.crypto.keys import AgencyKeys
from broker.errors import ConfigurationError, SignatureInvalid

log = structlog.get_logger("masp.witness")


@dataclass(frozen=True)
class Witnessed:
    checkpoint: Checkpoint
    previous_size: int | None
    witnesses: int
    published: bool


@dataclass
class LogWitness:
    keys: AgencyKeys
    #: pinned: the log's public keys for an origin (``broker/crypto/log_keys.py``)
    log_keys: Callable[[str], list[NoteVerifier]]
    state: Path  # the last checkpoint this agency cosigned, as the broker signed it
    clock: Clock
    #: The log's origin; when not configured, the origin first witnessed is kept for good.
    origin: str | None = None

    def _log_key(self, presented: str) -> list[NoteVerifier]:
        origin = self.origin
        if origin is None:
            source = self.state.read_text(encoding="utf-8") if self.state.exists() else presented
            origin = source.split("\n", 1)[0]
        keys = self.log_keys(origin)
        if not keys:
            raise SignatureInvalid("no trusted key for the log's origin")
        return keys

    def last_seen(self, log_key: list[NoteVerifier]) -> Checkpoint | None:
        if not self.state.exists():
            return None
        try:
            checkpoint, _ = open_checkpoint(self.state.read_text(encoding="utf-8"), log_key)
        except NoteError as exc:  # our own record: if it does not verify, stop rather than reset
            raise ConfigurationError(f"witness state {self.state} does not verify: {exc}") from None
        return checkpoint

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {wire.sign_agency_auth(self.keys, self.clock())}"}

    async def _consistency(self, client: httpx.AsyncClient, **params: int) -> dict[str, Any]:
        resp = await client.get("/v1/audit/consistency", params=params, headers=self._auth())
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    async def run(self, client: httpx.AsyncClient) -> Witnessed:
        latest = await self._consistency(client)
        log_key = self._log_key(latest["checkpoint"])
        old = self.last_seen(log_key)
        try:
            new, _ = open_checkpoint(latest["checkpoint"], log_key)
        except NoteError as exc:
            raise SignatureInvalid(f"checkpoint is not signed by the pinned log key: {exc}") from None
        proof: list[bytes] = []
        if old is not None and old.size < new.size:
            found = await self._consistency(client, **{"from": old.size, "to": new.size})
            proof = [base64.b64decode(h, validate=True) for h in found["proof"]]
        check_advance(old, new, proof)
        note = _log_signed(latest["checkpoint"], log_key[0].name)
        atomic_write(self.state, note.encode("utf-8"))
        private = self.keys.sig.private_key
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigurationError("the agency signing key is not an Ed25519 key")
        signer = CosignatureSigner(witness_name(self.keys.agency), private)
        line = signer.cosign(new.body(), int(self.clock().timestamp()))
        resp = await client.post("/v1/audit/cosignatures", content=append_cosignatures(note, [line]),
                                 headers={**self._auth(), "content-type": "text/plain; charset=utf-8"})
        resp.raise_for_status()
        result = resp.json()
        log.info("checkpoint_witnessed", agency=self.keys.agency, size=new.size,
                 previous_size=old.size if old else None, witnesses=result["witnesses"])
        return Witnessed(new, old.size if old else None, result["witnesses"], result["published"])


def _log_signed(note: str, log_name: str) -> str:
    """The note with the log's own signature lines only, without anyone's cosignatures."""
    split = note.rfind("\n\n")
    lines = [ln for ln in note[split + 2:].split("\n") if ln.startswith(f"\u2014 {log_name} ")]
    return note[: split + 2] + "".join(ln + "\n" for ln in lines)
