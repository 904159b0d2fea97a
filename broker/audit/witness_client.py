"""The log side of the C2SP tlog-witness protocol: the broker pushes its checkpoints to witnesses.

For each configured witness (``MASP_WITNESSES``: a submission URL and a pinned
``cosignature/v1`` vkey), a round sends the newest checkpoint with ``old <size>`` = the size
that witness last cosigned (from the stored cosignatures; 0 if none) and the consistency
proof from there. A 409 names the size the witness really holds: one retry starts from it.
If that size is larger than the newest checkpoint, or not the size of a checkpoint this log
issued, the witness has seen another or a bigger log (a rollback or a fork here): an error
is logged and nothing more is sent to that witness until the broker restarts.

Only cosignature lines by the pinned key (its name and key id) are considered; others are
ignored, as the spec says. The chosen line is verified and stored through the same path as
an agency's posted cosignature (``LogView.store``). Logs carry codes and sizes, never bodies.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx
import structlog

from broker.audit.note import CosignatureVerifier, NoteError
from broker.audit.tlog_witness import SIZE_MEDIA, AddCheckpoint, WitnessRefusal, parse_cosignature_lines
from broker.errors import MaspError

log = structlog.get_logger("masp.witness_client")

MAX_RESPONSE_BYTES = 64 * 1024
"""A witness answers with a few signature lines; more is not read."""
_SIZE_BODY = re.compile(r"(0|[1-9][0-9]{0,19})\n")


class LogView(Protocol):
    """What the client needs from the log's storage (``broker/store/audit_witness.py``)."""

    async def newest(self) -> tuple[int, str] | None:
        """The newest checkpoint's size and its note as the log signed it (no cosignatures)."""

    async def cosigned_size(self, witness: str) -> int:
        """The largest checkpoint size ``witness`` cosigned, as stored; 0 if none."""

    async def issued(self, size: int) -> bool:
        """Whether the log issued a checkpoint of ``size``."""

    async def proof(self, old: int, new: int) -> list[bytes]:
        """The consistency proof from ``old`` to ``new`` (empty for 0 or equal sizes)."""

    async def store(self, agency: str, verifier: CosignatureVerifier, size: int, line: str) -> None:
        """Verify ``line`` over the checkpoint of ``size`` and store it; ``MaspError`` if refused."""


@dataclass
class StandardWitness:
    """One witness: where to submit, the pinned key, and what goes in ``agency`` when storing
    its cosignatures (the agency for an agency's own witness key, else empty)."""

    url: str
    verifier: CosignatureVerifier
    agency: str = ""
    #: the error code that stopped submissions to this witness, if one did
    stopped: str | None = None

    @property
    def name(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class Outcome:
    """What one submission did: a code (``cosigned``, ``up-to-date``, or why not) and sizes."""

    witness: str
    code: str
    size: int | None = None
    old_size: int | None = None
    status: int | None = None


class _Answer(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.code)
        self.outcome = outcome


def _conflict_size(content_type: str, body: bytes) -> int | None:
    if content_type.split(";", 1)[0].strip().lower() != SIZE_MEDIA:
        return None
    found = _SIZE_BODY.fullmatch(body.decode("ascii", "replace"))
    return int(found[1]) if found else None


async def _post(client: httpx.AsyncClient, url: str, body: bytes, timeout: float
                ) -> tuple[int, str, bytes | None]:
    """POST ``body``; status, content type, and the body (None when larger than allowed).

    ``timeout`` bounds the whole exchange: httpx's own timeouts are per read, so a witness
    dripping bytes would otherwise hold the round for ever.
    """
    async with asyncio.timeout(timeout):
        async with client.stream("POST", url, content=body,
                                 headers={"content-type": "text/plain; charset=utf-8"}) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    return resp.status_code, resp.headers.get("content-type", ""), None
                chunks.append(chunk)
            return resp.status_code, resp.headers.get("content-type", ""), b"".join(chunks)


@dataclass
class WitnessClient:
    """Submits the log's newest checkpoint to each witness (``round``), or forever (``run``)."""

    witnesses: Sequence[StandardWitness]
    log_view: LogView
    client: httpx.AsyncClient
    timeout: float = 10.0

    async def round(self) -> list[Outcome]:
        """One submission to every witness that has not cosigned the newest checkpoint."""
        outcomes = await asyncio.gather(*(self.submit(w) for w in self.witnesses))
        return list(outcomes)

    async def run(self, every: float) -> None:
        """``round`` every ``every`` seconds until cancelled; a failed round is logged only."""
        while True:
            try:
                await self.round()
            except Exception as exc:  # the database away for a moment must not end the task
                log.error("witness_round_failed", code=type(exc).__name__)
            await asyncio.sleep(every)

    async def submit(self, witness: StandardWitness) -> Outcome:
        try:
            outcome = await self._submit(witness)
        except _Answer as answer:
            outcome = answer.outcome
        except (httpx.HTTPError, TimeoutError) as exc:
            outcome = Outcome(witness.name, "unreachable")
            log.warning("witness_unreachable", witness=witness.name, code=type(exc).__name__)
        return outcome

    def _stop(self, witness: StandardWitness, code: str, **sizes: int) -> _Answer:
        witness.stopped = code
        log.error("witness_stopped", witness=witness.name, code=code, **sizes)
        return _Answer(Outcome(witness.name, code, sizes.get("size"), sizes.get("witness_size")))

    async def _submit(self, witness: StandardWitness) -> Outcome:
        if witness.stopped is not None:
            return Outcome(witness.name, "stopped")
        newest = await self.log_view.newest()
        if newest is None:
            return Outcome(witness.name, "no-checkpoint")
        size, note = newest
        old = await self.log_view.cosigned_size(witness.name)
        if old >= size:
            return Outcome(witness.name, "up-to-date", size, old)
        for attempt in (1, 2):
            try:
                request = AddCheckpoint.of(old, await self.log_view.proof(old, size), note)
            except WitnessRefusal:  # pragma: no cover - the log's own checkpoint and proof
                raise self._stop(witness, "own-checkpoint-malformed", size=size) from None
            status, content_type, body = await _post(
                self.client, witness.url + "/add-checkpoint", request.encode(), self.timeout)
            if status == 409 and body is not None:
                seen = _conflict_size(content_type, body)
                if seen is None or attempt == 2:
                    code = "conflict-unreadable" if seen is None else "conflict-again"
                    log.warning("witness_conflict", witness=witness.name, code=code, size=size, old_size=old)
                    return Outcome(witness.name, code, size, old, status)
                if seen > size:
                    raise self._stop(witness, "witness-ahead", size=size, witness_size=seen)
                if seen > 0 and not await self.log_view.issued(seen):
                    raise self._stop(witness, "witness-unknown-size", size=size, witness_size=seen)
                log.info("witness_resync", witness=witness.name, size=size, old_size=old, witness_size=seen)
                old = seen
                continue
            return await self._answered(witness, status, body, size, old)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _answered(self, witness: StandardWitness, status: int, body: bytes | None,
                        size: int, old: int) -> Outcome:
        if status != 200 or body is None:
            code = {403: "log-not-trusted", 404: "log-unknown", 422: "refused-inconsistent",
                    400: "refused-malformed"}.get(status, "refused")
            if body is None:
                code = "answer-too-large"
            (log.error if status in (403, 404, 422) else log.warning)(
                "witness_refused", witness=witness.name, code=code, status=status, size=size, old_size=old)
            return Outcome(witness.name, code, size, old, status)
        try:
            lines = parse_cosignature_lines(body.decode("utf-8"))
        except (NoteError, UnicodeDecodeError):
            log.warning("witness_answer_malformed", witness=witness.name, size=size)
            return Outcome(witness.name, "answer-malformed", size, old, status)
        pinned = witness.verifier
        mine = [line for name, raw, line in lines if name == pinned.name and raw[:4] == pinned.key_id]
        if not mine:
            log.warning("witness_no_pinned_cosignature", witness=witness.name, size=size)
            return Outcome(witness.name, "no-pinned-cosignature", size, old, status)
        try:
            await self.log_view.store(witness.agency, pinned, size, mine[0])
        except MaspError as exc:
            log.error("witness_cosignature_refused", witness=witness.name, code=exc.code, size=size)
            return Outcome(witness.name, exc.code, size, old, status)
        log.info("witness_cosigned", witness=witness.name, size=size, old_size=old)
        return Outcome(witness.name, "cosigned", size, old, status)


__all__ = ["MAX_RESPONSE_BYTES", "LogView", "Outcome", "StandardWitness", "WitnessClient"]
