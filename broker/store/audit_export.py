"""Reading the audit log out of the database: verification in place and export for offline checks.

Export layout (``masp audit export --out DIR``):
``entries.jsonl``  one line per entry: ``{"seq", "leaf" (the canonical JSON, verbatim), "leaf_hash"}``
``checkpoints.jsonl``  one line per checkpoint: ``{"size", "note"}``, the C2SP signed note with
    every witness cosignature the broker holds for it
``consistency.jsonl``  ``{"from", "to", "proof": [base64]}`` between consecutive checkpoints
``log.vkey``  the note verifier key of the log; ``witnesses.vkey`` the agencies' cosignature
    verifier keys, one a line. Both for convenience: verifiers should pin their own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import suppress
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from broker.audit.note import Checkpoint, CosignatureVerifier, NoteVerifier
from broker.audit.verify import (
    ConsistencyProofs,
    Row,
    VerifyReport,
    check_in_workers,
    check_leaves,
    pages_of,
    verify_checked,
)
from broker.audit.witness import append_cosignatures, witness_verifier
from broker.crypto.keys import BROKER, KeyRegistry
from broker.store import raw
from broker.store.audit_log import read_checkpoints
from broker.store.audit_tree import consistency_proofs
from broker.store.audit_witness import all_cosignatures

if TYPE_CHECKING:
    from broker.service import BrokerService

_PAGE = 5000
_PARALLEL_FROM = 100_000
_PAGE_SQL = "SELECT seq, leaf, leaf_hash FROM audit_entry WHERE seq > ? ORDER BY seq LIMIT ?"


async def _pages(service: BrokerService) -> AsyncIterator[Sequence[tuple[int, bytes, bytes]]]:
    """``(seq, leaf, leaf_hash)`` in order, a page per query, over one connection.

    Keyset pages straight from the driver (aiosqlite rows, asyncpg records): no ORM objects
    nor SQLAlchemy result rows, since this streams the whole log.
    """
    async with service.exchange.sessions() as session:
        after = -1
        while rows := await raw.fetch(session, _PAGE_SQL, after, _PAGE):
            yield rows  # type: ignore[misc]  # driver rows of (seq, leaf, leaf_hash)
            after = rows[-1][0]


def _workers(checkpoints: Sequence[tuple[int, str]]) -> int:
    """Worker processes for checking leaves: none on two cores or for a small log.

    Shipping pages to workers costs 25-40% more CPU in all (pickling, pipes, start-up), and
    with only two cores, shared with the database, the main process and the workers take
    turns rather than overlap: on the 2-core machine one process verified 1M entries faster
    (docs/performance.md). From four cores the workers have cores of their own.
    """
    size = max((s for s, _ in checkpoints), default=0)
    cores = os.cpu_count() or 1
    return min(cores - 1, 4) if cores >= 4 and size >= _PARALLEL_FROM else 0


def witness_verifiers(registry: KeyRegistry) -> list[CosignatureVerifier]:
    """Every registered agency as a witness, with its current signing key."""
    found = []
    for agency in sorted(registry.agencies() - {BROKER}):
        public = registry.current(agency, "sig").public_key
        if isinstance(public, Ed25519PublicKey):
            found.append(witness_verifier(agency, public))
    return found


async def _checkpoints(service: BrokerService) -> tuple[list[tuple[int, str]], ConsistencyProofs]:
    """Cosigned checkpoint notes and the consistency proofs between consecutive ones."""
    async with service.exchange.sessions() as session:
        rows = await read_checkpoints(session)
        cosigs = await all_cosignatures(session)
        sizes = [r.size for r in rows if r.size > 0]
        proofs = await consistency_proofs(session, list(pairwise(sizes)))
    notes = [(r.size, append_cosignatures(r.note, cosigs.get(r.size, []))) for r in rows]
    return notes, proofs


async def verify_database(service: BrokerService, verifier: NoteVerifier | None = None, *,
                          witnessed: Sequence[Checkpoint] = (), workers: int | None = None,
                          progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the log in place; ``witnessed`` are checkpoints agencies cosigned earlier.

    Leaves are checked in ``workers`` processes (default: see ``_workers``); the tree and
    the checkpoints are followed in order in one thread either way. Worker processes are
    spawned, so the calling program's main module must be import-safe (the usual
    ``if __name__ == "__main__"`` idiom; the ``masp`` entry point is).
    """
    checkpoints, proofs = await _checkpoints(service)
    workers = _workers(checkpoints) if workers is None else workers
    # Pages flow through a small bounded queue to the verifier running in a thread, so
    # memory stays flat however long the log is, and the event loop stays free meanwhile.
    pages: queue.Queue[Sequence[Row] | None] = queue.Queue(maxsize=4)
    raw = iter(pages.get, None)
    checked = check_in_workers(raw, workers) if workers else map(check_leaves, raw)

    verifying = asyncio.ensure_future(asyncio.to_thread(
        verify_checked, checked, checkpoints, verifier or service.exchange.audit.signer.verifier(),
        witnesses=witness_verifiers(service.exchange.registry),
        quorum=service.settings.witness_quorum, consistency=proofs, witnessed=witnessed,
        progress=progress))

    async def put(item: Sequence[Row] | None) -> bool:
        while not verifying.done():  # the verifier may stop early at the first bad entry
            try:
                pages.put_nowait(item)
                return True
            except queue.Full:
                await asyncio.sleep(0.005)
        return False

    try:
        async for page in _pages(service):
            if not await put(page):
                break
        await put(None)
        return await verifying
    finally:
        if not verifying.done():  # reading failed: let the verifier thread finish
            await put(None)
            with suppress(Exception):
                await verifying
        if isinstance(checked, Generator):
            await asyncio.to_thread(checked.close)  # stop and reap the worker processes


async def export_log(service: BrokerService, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
        async for page in _pages(service):
            for seq, leaf, lh in page:
                fh.write(json.dumps({"seq": seq, "leaf": leaf.decode("utf-8"), "leaf_hash": lh.hex()},
                                    ensure_ascii=False) + "\n")
                count += 1
    checkpoints, proofs = await _checkpoints(service)
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for size, note in checkpoints:
            fh.write(json.dumps({"size": size, "note": note}) + "\n")
    with (out / "consistency.jsonl").open("w", encoding="utf-8") as fh:
        for (size1, size2), proof in sorted(proofs.items()):
            fh.write(json.dumps({"from": size1, "to": size2, "proof": [
                base64.b64encode(h).decode("ascii") for h in proof]}) + "\n")
    (out / "log.vkey").write_text(service.exchange.audit.signer.verifier().vkey + "\n")
    (out / "witnesses.vkey").write_text("".join(
        w.vkey + "\n" for w in witness_verifiers(service.exchange.registry)))
    return count


def _read_entries(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield int(row["seq"]), row["leaf"].encode("utf-8"), bytes.fromhex(row["leaf_hash"])


def _read_consistency(path: Path) -> ConsistencyProofs | None:
    if not path.exists():
        return None  # an export from before proofs were exported
    with path.open(encoding="utf-8") as fh:
        return {(int(r["from"]), int(r["to"])): [base64.b64decode(h, validate=True) for h in r["proof"]]
                for r in map(json.loads, fh)}


def verify_export(export_dir: Path, vkey: str | None = None, *,
                  witness_vkeys: Sequence[str] | None = None, quorum: int = 2,
                  witnessed: Sequence[Checkpoint] = (), workers: int | None = None) -> VerifyReport:
    """Verify an export with only its files and pinned keys (default: the export's own).

    Leaves are checked in ``workers`` processes as for ``verify_database``.
    """
    key = vkey or (export_dir / "log.vkey").read_text().strip()
    verifier = NoteVerifier.from_vkey(key)
    if witness_vkeys is None:
        path = export_dir / "witnesses.vkey"
        witness_vkeys = path.read_text().split() if path.exists() else []
    witnesses = [CosignatureVerifier.from_vkey(v) for v in witness_vkeys]
    with (export_dir / "checkpoints.jsonl").open(encoding="utf-8") as fh:
        checkpoints = [(int(r["size"]), str(r["note"])) for r in map(json.loads, fh)]
    workers = _workers(checkpoints) if workers is None else workers
    pages = pages_of(_read_entries(export_dir / "entries.jsonl"), _PAGE)
    checked = check_in_workers(pages, workers) if workers else map(check_leaves, pages)
    try:
        return verify_checked(checked, checkpoints, verifier, witnesses=witnesses, quorum=quorum,
                              consistency=_read_consistency(export_dir / "consistency.jsonl"),
                              witnessed=witnessed)
    finally:
        if isinstance(checked, Generator):
            checked.close()
