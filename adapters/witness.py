"""An agency as a witness of the broker's audit log, in two modes over one core.

Both go through ``broker.audit.tlog_witness.Witness`` (the C2SP tlog-witness checks, the
record of the last cosigned checkpoint under ``<adapter home>/witness/checkpoint``):

- push: the broker (or any log client) POSTs ``add-checkpoint`` to the adapter's endpoint
  (``adapters/endpoint.py``);
- pull (``LogWitness.run``, here): the adapter fetches the newest checkpoint from the broker,
  submits it to its own witness with the old size it recorded and a consistency proof fetched
  from the broker, and posts the cosignature back to ``POST /v1/audit/cosignatures``.

In pull mode a broker that presents a smaller tree (a restored database) raises
``LogRollback``; one whose tree does not extend the recorded one raises ``LogInconsistent``;
neither gets a cosignature.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from broker import wire
from broker.audit.note import Checkpoint, NoteError, note_signatures
from broker.audit.tlog_witness import AddCheckpoint, Witness, WitnessRefusal
from broker.audit.witness import append_cosignatures
from broker.clock import Clock
from broker.crypto.keys import AgencyKeys
from broker.errors import (
    Conflict,
    LogInconsistent,
    LogRollback,
    MalformedMessage,
    MaspError,
    SignatureInvalid,
)

log = structlog.get_logger("masp.witness")


@dataclass(frozen=True)
class Witnessed:
    checkpoint: Checkpoint
    previous_size: int | None
    witnesses: int
    published: bool


@dataclass
class LogWitness:
    """Pull mode: fetch, check through ``witness`` and cosign the broker's newest checkpoint."""

    keys: AgencyKeys
    witness: Witness
    clock: Clock

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {wire.sign_agency_auth(self.keys, self.clock())}"}

    async def _consistency(self, client: httpx.AsyncClient, **params: int) -> dict[str, Any]:
        resp = await client.get("/v1/audit/consistency", params=params, headers=self._auth())
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    async def _proof(self, client: httpx.AsyncClient, old: int, new: int) -> list[bytes]:
        if not 0 < old < new:
            return []
        found = await self._consistency(client, **{"from": old, "to": new})
        try:
            return [base64.b64decode(h, validate=True) for h in found["proof"]]
        except (binascii.Error, TypeError, ValueError, KeyError):
            raise MalformedMessage("the broker's consistency proof is not a list of base64 hashes") from None

    async def run(self, client: httpx.AsyncClient) -> Witnessed:
        note = (await self._consistency(client))["checkpoint"]
        try:
            presented = Checkpoint.parse(note_signatures(note)[0])
        except (NoteError, TypeError) as exc:
            raise SignatureInvalid(f"the broker's checkpoint is not a signed checkpoint: {exc}") from None
        # The recorded size may move under us (the broker pushing add-checkpoint meanwhile):
        # the core then answers 409 and one more try starts from the size it reports.
        previous = await asyncio.to_thread(self.witness.latest, presented.origin)
        old = previous.size if previous else 0
        for attempt in (1, 2):
            proof = await self._proof(client, old, presented.size)
            try:
                request = AddCheckpoint.of(old, proof, note)
                lines = await asyncio.to_thread(self.witness.submit, request)
                break
            except WitnessRefusal as exc:
                if exc.status == 409 and exc.latest_size is not None and attempt == 1:
                    old = exc.latest_size
                    continue
                raise pull_error(exc, old, presented.size) from None
        origin = presented.origin
        body = append_cosignatures(_log_signed(note, origin), lines)
        resp = await client.post("/v1/audit/cosignatures", content=body,
                                 headers={**self._auth(), "content-type": "text/plain; charset=utf-8"})
        resp.raise_for_status()
        result = resp.json()
        log.info("checkpoint_witnessed", agency=self.keys.agency, size=presented.size,
                 previous_size=old if previous else None, witnesses=result["witnesses"])
        return Witnessed(presented, old if previous else None, result["witnesses"], result["published"])


def pull_error(refusal: WitnessRefusal, witnessed: int, presented: int) -> MaspError:
    """The typed error a refusal is in pull mode, where the broker is the one being checked."""
    sizes = {"witnessed_size": witnessed, "presented_size": presented}
    if refusal.code == "old-size-too-large":
        return LogRollback(f"the log presents size {presented}, smaller than the {witnessed} "
                           "already witnessed", **sizes)
    if refusal.code == "root-mismatch":
        return LogInconsistent(f"two different trees of size {presented}", **sizes)
    if refusal.status == 422:
        return LogInconsistent(f"size {presented} is not an extension of the witnessed size "
                               f"{witnessed}: {refusal.detail}", **sizes)
    if refusal.status == 404:
        return SignatureInvalid("no trusted key for the log's origin")
    if refusal.status == 403:
        return SignatureInvalid("checkpoint is not signed by the pinned log key")
    if refusal.status == 409:
        return Conflict("the witness record moved twice while this checkpoint was checked")
    return MalformedMessage(f"the broker's checkpoint was refused: {refusal.detail}")


def _log_signed(note: str, log_name: str) -> str:
    """The note with the log's own signature lines only, without anyone's cosignatures."""
    text, lines = note_signatures(note)
    return text + "\n" + "".join(line + "\n" for name, _, line in lines if name == log_name)
