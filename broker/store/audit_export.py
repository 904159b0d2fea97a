"""Reading the audit log out of the database: verification in place and export for offline checks.

Export layout (``masp audit export --out DIR``), format ``masp-audit-export/2``:
``manifest.json``  ``{"format", "origin", "size", "checkpoints"}``: what the export says it
    holds; a verifier refuses another format or another log, and believes nothing else in it
``entries.jsonl``  one line per entry: ``{"seq", "leaf" (the canonical JSON, verbatim), "leaf_hash"}``
``checkpoints.jsonl``  one line per checkpoint: ``{"size", "note"}``, the C2SP signed note with
    every witness cosignature the broker holds for it
``consistency.jsonl``  ``{"from", "to", "proof": [base64]}`` between consecutive checkpoints

No keys: a verifier pins its own (``broker/audit/trust.py``; ``masp audit trust`` writes the
operator's side of them, to be handed over separately).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import queue
import stat
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from contextlib import asynccontextmanager, suppress
from itertools import pairwise
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broker.audit.note import Checkpoint, CosignatureVerifier, NoteError
from broker.audit.trust import PinnedLogKey, Trust
from broker.audit.verify import (
    ROTATION_KIND,
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
from broker.crypto.log_keys import LogKeyStore
from broker.errors import InvalidRange
from broker.store import raw
from broker.store.audit_log import read_checkpoints, read_rotations
from broker.store.audit_tree import consistency_proofs
from broker.store.audit_witness import all_cosignatures

if TYPE_CHECKING:
    from broker.service import BrokerService

Sessions = async_sessionmaker[AsyncSession]
EXPORT_FORMAT = "masp-audit-export/2"

_PAGE = 5000
_PARALLEL_FROM = 100_000
_PAGE_SQL = "SELECT seq, leaf, leaf_hash FROM audit_entry WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?"
_NO_END = 2**31 - 1  # seq is a 32-bit column
#: rows the sequencer never writes, which the pages above would pass over (2**31 - 1: ``_NO_END``)
_STRAY_SQL = "SELECT count(*) FROM audit_entry WHERE seq < 0 OR seq >= 2147483647"


async def _pages(session: AsyncSession, end: int = _NO_END
                 ) -> AsyncIterator[Sequence[tuple[int, bytes, bytes]]]:
    """``(seq, leaf, leaf_hash)`` of entries before ``end`` in order, a page per query, in the
    caller's session (a snapshot, ``_snapshot``).

    Keyset pages straight from the driver (aiosqlite rows, asyncpg records): no ORM objects
    nor SQLAlchemy result rows, since this streams the whole log.
    """
    after = -1
    while rows := await raw.fetch(session, _PAGE_SQL, after, end, _PAGE):
        yield rows  # type: ignore[misc]  # driver rows of (seq, leaf, leaf_hash)
        after = rows[-1][0]


_INDEXED_SQL = ("SELECT seq, leaf, leaf_hash, kind, message_id, delivery_id, sender, recipient, decision, "
                "clause, at FROM audit_entry WHERE seq > ? AND seq < ? ORDER BY seq LIMIT ?")
_SUBJECTS_SQL = "SELECT seq, pseudonym FROM audit_subject WHERE seq >= ? AND seq <= ?"


async def _indexed_pages(session: AsyncSession) -> AsyncIterator[list[Row]]:
    """Pages as ``_pages``, each row with what the database indexes beside its leaf: the
    ``audit_entry`` columns and the ``audit_subject`` pseudonyms, to be checked against it."""
    after = -1
    while rows := await raw.fetch(session, _INDEXED_SQL, after, _NO_END, _PAGE):
        subjects: dict[int, set[str]] = {}
        for seq, pseudonym in await raw.fetch(session, _SUBJECTS_SQL, rows[0][0], rows[-1][0]):
            subjects.setdefault(int(seq), set()).add(str(pseudonym))
        yield [(r[0], r[1], r[2], (*r[3:], subjects.get(r[0], set()))) for r in rows]
        after = rows[-1][0]


@asynccontextmanager
async def _snapshot(sessions: Sessions) -> AsyncIterator[AsyncSession]:
    """A session that reads the whole log as of one moment.

    The log is read in several queries (checkpoints, cosignatures, rotations, pages of
    entries); a unit of work committing between them would add entries after the checkpoints
    were read, which would look like an unsigned tail. Every unit of work commits its entries
    with their checkpoint, so in one snapshot the newest checkpoint covers every entry.
    PostgreSQL: a REPEATABLE READ, read-only transaction; SQLite (WAL): one read transaction,
    begun explicitly since the driver begins none for reads.
    """
    async with sessions() as session:
        bind = session.bind
        if bind is not None and bind.dialect.name == "postgresql":
            conn = await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        else:
            conn = await session.connection()
            await conn.exec_driver_sql("BEGIN")
        yield session


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


def deployment_witnesses(registry: KeyRegistry, standard: Sequence[CosignatureVerifier] = ()
                         ) -> list[CosignatureVerifier]:
    """Every witness of this deployment: each agency, and each standard witness the broker
    submits to (``MASP_WITNESSES``; an agency's own endpoint listed there is counted once)."""
    found = witness_verifiers(registry)
    seen = {(w.name, w.key_id) for w in found}
    return [*found, *(w for w in standard if (w.name, w.key_id) not in seen)]


async def operator_trust(sessions: Sessions, log_keys: LogKeyStore, witnesses: Sequence[CosignatureVerifier],
                         quorum: int) -> Trust:
    """The trust a relying party should pin, from this operator's own keys: the log's first key,
    each later one ``since`` the entry that introduced it, the witnesses and the quorum."""
    keys = log_keys.all_keys()
    async with sessions() as session:
        rotations = await read_rotations(session)
    since = {}
    for seq, statement in rotations:
        for key in keys:
            if f"\nnew {key.vkey}\n" in statement:
                since[key.id] = seq
    pinned = tuple(PinnedLogKey(k.verifier, since.get(k.id)) for k in keys)
    return Trust(pinned, tuple(witnesses), min(quorum, len(witnesses)))


async def _checkpoints(session: AsyncSession, end: int | None = None
                       ) -> tuple[list[tuple[int, str]], ConsistencyProofs]:
    """Cosigned checkpoint notes (up to size ``end``) and the consistency proofs between
    consecutive ones."""
    rows = [r for r in await read_checkpoints(session) if end is None or r.size <= end]
    cosigs = await all_cosignatures(session)
    sizes = [r.size for r in rows if r.size > 0]
    proofs = await consistency_proofs(session, list(pairwise(sizes)))
    notes = [(r.size, _cosigned(r.note, cosigs.get(r.size, []))) for r in rows]
    return notes, proofs


def _cosigned(note: str, lines: Sequence[str]) -> str:
    try:
        return append_cosignatures(note, lines)
    except NoteError:  # a malformed stored note: the verifier refuses it at its size
        return note


async def verify_store(sessions: Sessions, trust: Trust, *, witnessed: Sequence[Checkpoint] = (),
                       workers: int | None = None, allow_unsigned_tail: bool = False,
                       progress: Callable[[int], None] | None = None) -> VerifyReport:
    """Verify the log in place against ``trust``; ``witnessed`` are checkpoints agencies
    cosigned earlier.

    Leaves are checked in ``workers`` processes (default: see ``_workers``); the tree and
    the checkpoints are followed in order in one thread either way. Worker processes are
    spawned, so the calling program's main module must be import-safe (the usual
    ``if __name__ == "__main__"`` idiom; the ``masp`` entry point is).
    """
    async with _snapshot(sessions) as session:
        return await _verify_snapshot(session, trust, witnessed=witnessed, workers=workers,
                                      allow_unsigned_tail=allow_unsigned_tail, progress=progress)


async def _verify_snapshot(session: AsyncSession, trust: Trust, *, witnessed: Sequence[Checkpoint],
                           workers: int | None, allow_unsigned_tail: bool,
                           progress: Callable[[int], None] | None) -> VerifyReport:
    stray = int((await raw.fetch(session, _STRAY_SQL))[0][0])
    if stray:
        return VerifyReport(0, 0, 0, "", None, f"the database holds {stray} audit entries outside the "
                                               f"log's sequence (seq below 0 or from {_NO_END})")
    try:
        checkpoints, proofs = await _checkpoints(session)
    except InvalidRange as exc:  # a stored checkpoint past the stored entries
        return VerifyReport(0, 0, 0, "", None, f"the stored checkpoints need entries or tree nodes the "
                                               f"database does not hold ({exc.detail})")
    rotations = await read_rotations(session)
    workers = _workers(checkpoints) if workers is None else workers
    # Pages flow through a small bounded queue to the verifier running in a thread, so
    # memory stays flat however long the log is, and the event loop stays free meanwhile.
    pages: queue.Queue[Sequence[Row] | None] = queue.Queue(maxsize=4)
    rows = iter(pages.get, None)
    checked = check_in_workers(rows, workers) if workers else map(check_leaves, rows)

    verifying = asyncio.ensure_future(asyncio.to_thread(
        verify_checked, checked, checkpoints, trust, rotations=rotations, consistency=proofs,
        witnessed=witnessed, allow_unsigned_tail=allow_unsigned_tail, progress=progress))

    async def put(item: Sequence[Row] | None) -> bool:
        while not verifying.done():  # the verifier may stop early at the first bad entry
            try:
                pages.put_nowait(item)
                return True
            except queue.Full:
                await asyncio.sleep(0.005)
        return False

    try:
        async for page in _indexed_pages(session):
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


async def verify_database(service: BrokerService, trust: Trust | None = None, *,
                          witnessed: Sequence[Checkpoint] = (), workers: int | None = None,
                          allow_unsigned_tail: bool = False,
                          progress: Callable[[int], None] | None = None) -> VerifyReport:
    """``verify_store`` for a running broker; by default against the operator's own keys (every
    log key, the agencies as witnesses, no quorum required: witnesses may lag)."""
    exchange = service.exchange
    if trust is None:
        from broker.service import log_keys

        trust = await operator_trust(exchange.sessions, log_keys(service.settings), deployment_witnesses(
            exchange.registry, [w.verifier for w in service.settings.witnesses]), 0)
    return await verify_store(exchange.sessions, trust, witnessed=witnessed, workers=workers,
                              allow_unsigned_tail=allow_unsigned_tail, progress=progress)


async def export_log(sessions: Sessions, out: Path, origin: str, *, size: int | None = None) -> int:
    """Write the log (up to the checkpoint of ``size``, default the newest) to ``out``."""
    async with _snapshot(sessions) as session:  # the checkpoints cover exactly the entries written
        checkpoints, proofs = await _checkpoints(session, size)
        if size is not None and not any(s == size for s, _ in checkpoints):
            from broker.errors import NotFound

            raise NotFound(f"the log issued no checkpoint of size {size}")
        end = size if size is not None else _NO_END
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
            async for page in _pages(session, end):
                for seq, leaf, lh in page:
                    fh.write(json.dumps({"seq": seq, "leaf": bytes(leaf).decode("utf-8"),
                                         "leaf_hash": bytes(lh).hex()}, ensure_ascii=False) + "\n")
                    count += 1
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for cp_size, note in checkpoints:
            fh.write(json.dumps({"size": cp_size, "note": note}) + "\n")
    with (out / "consistency.jsonl").open("w", encoding="utf-8") as fh:
        for (size1, size2), proof in sorted(proofs.items()):
            fh.write(json.dumps({"from": size1, "to": size2, "proof": [
                base64.b64encode(h).decode("ascii") for h in proof]}) + "\n")
    (out / "manifest.json").write_text(json.dumps(
        {"format": EXPORT_FORMAT, "origin": origin, "size": count, "checkpoints": len(checkpoints)},
        indent=2) + "\n")
    for stale in ("log.vkey", "witnesses.vkey"):  # an older export's keys must not linger beside
        (out / stale).unlink(missing_ok=True)
    return count


class ExportInvalid(ValueError):
    """A file of the export is not what the format says; names the file and line, not its content."""


_MAX_LINE = 8 << 20
"""Characters in one line of an export file: a leaf is a few kB, a note at most 1 MiB (a few MiB
JSON-escaped). Longer is refused before it is read whole."""
_MAX_MANIFEST = 1 << 16


class _KeyTwice(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` keeps the last of two equal keys, other readers the first: refuse both."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise _KeyTwice
    return doc


_JSON = json.JSONDecoder(object_pairs_hook=_unique)  # made once: ``json.loads(hook=)`` makes one a line


def _open(path: Path, missing: str = "") -> IO[str]:
    """A regular file of the export: a FIFO would block for ever, a device never end."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ExportInvalid(f"{path.name} is missing{missing}") from None
    except OSError as exc:
        raise ExportInvalid(f"{path.name} cannot be read ({type(exc).__name__})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ExportInvalid(f"{path.name} is not a regular file")
    return os.fdopen(fd, encoding="utf-8")


def _lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with _open(path) as fh:
        number = 0
        try:
            while line := fh.readline(_MAX_LINE + 1):
                number += 1
                if len(line) > _MAX_LINE:
                    raise ExportInvalid(f"{path.name} line {number} is too long")
                try:
                    doc = _JSON.decode(line)
                except _KeyTwice:
                    raise ExportInvalid(f"{path.name} line {number} gives a key twice") from None
                except ValueError:
                    raise ExportInvalid(f"{path.name} line {number} is not JSON (truncated?)") from None
                if not isinstance(doc, dict):
                    raise ExportInvalid(f"{path.name} line {number} is not a JSON object")
                yield number, doc
        except UnicodeDecodeError:
            raise ExportInvalid(f"{path.name} line {number + 1} is not UTF-8") from None


def _read_entries(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    for number, row in _lines(path):
        seq, leaf, lh = row.get("seq"), row.get("leaf"), row.get("leaf_hash")
        if type(seq) is not int or not isinstance(leaf, str) or not isinstance(lh, str):
            raise ExportInvalid(f"entries.jsonl line {number} lacks seq, leaf or leaf_hash")
        try:
            yield seq, leaf.encode("utf-8"), bytes.fromhex(lh)
        except (ValueError, UnicodeEncodeError):
            raise ExportInvalid(f"entries.jsonl line {number} has an invalid leaf or leaf_hash") from None


def _read_checkpoints(path: Path) -> list[tuple[int, str]]:
    found = []
    for number, row in _lines(path):
        size, note = row.get("size"), row.get("note")
        if type(size) is not int or not isinstance(note, str):
            raise ExportInvalid(f"checkpoints.jsonl line {number} lacks size or note")
        found.append((size, note))
    return found


def _read_consistency(path: Path) -> ConsistencyProofs:
    found: dict[tuple[int, int], list[bytes]] = {}
    for number, row in _lines(path):
        a, b, proof = row.get("from"), row.get("to"), row.get("proof")
        if type(a) is not int or type(b) is not int or not isinstance(proof, list):
            raise ExportInvalid(f"consistency.jsonl line {number} lacks from, to or proof")
        try:
            found[(a, b)] = [base64.b64decode(h, validate=True) for h in proof]
        except (binascii.Error, TypeError, ValueError):
            raise ExportInvalid(f"consistency.jsonl line {number} has a hash that is not base64") from None
    return found


def _rotations_ahead(path: Path) -> list[tuple[int, str]]:
    """Rotation entries, read ahead of verification (a hint: see ``verify.first_key``)."""
    found = []
    for _, row in _lines(path):
        leaf = row.get("leaf")
        if isinstance(leaf, str) and ROTATION_KIND in leaf:
            with suppress(ValueError):
                doc = json.loads(leaf)
                if isinstance(doc, dict) and doc.get("kind") == ROTATION_KIND:
                    statement, seq = doc.get("log_key_rotation"), doc.get("seq")
                    if isinstance(statement, str) and type(seq) is int:
                        found.append((seq, statement))
    return found


def _check_manifest(export_dir: Path, trust: Trust) -> None:
    with _open(export_dir / "manifest.json", f": not a {EXPORT_FORMAT} export") as fh:
        try:
            manifest = _JSON.decode(fh.read(_MAX_MANIFEST + 1))
        except _KeyTwice:
            raise ExportInvalid("manifest.json gives a key twice") from None
        except (OSError, ValueError):  # also a manifest cut at its limit
            raise ExportInvalid("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise ExportInvalid(f"manifest.json does not say format {EXPORT_FORMAT}")
    if manifest.get("origin") != trust.origin:
        raise ExportInvalid(f"the export is not of the log {trust.origin} whose keys are pinned")


def verify_export(export_dir: Path, trust: Trust, *, witnessed: Sequence[Checkpoint] = (),
                  workers: int | None = None, allow_unsigned_tail: bool = False) -> VerifyReport:
    """Verify an export with only its files and the keys the caller pinned.

    Leaves are checked in ``workers`` processes as for ``verify_store``. A file that does not
    parse is a failed verification naming the file and line, as is a missing file.
    """
    try:
        _check_manifest(export_dir, trust)
        checkpoints = _read_checkpoints(export_dir / "checkpoints.jsonl")
        consistency = _read_consistency(export_dir / "consistency.jsonl")
        rotations = _rotations_ahead(export_dir / "entries.jsonl")
    except ExportInvalid as exc:
        return _invalid(str(exc))
    workers = _workers(checkpoints) if workers is None else workers
    pages = pages_of(_read_entries(export_dir / "entries.jsonl"), _PAGE)
    checked = check_in_workers(pages, workers) if workers else map(check_leaves, pages)
    try:
        return verify_checked(checked, checkpoints, trust, rotations=rotations, consistency=consistency,
                              witnessed=witnessed, allow_unsigned_tail=allow_unsigned_tail)
    except ExportInvalid as exc:
        return _invalid(str(exc))
    finally:
        if isinstance(checked, Generator):
            checked.close()


def _invalid(problem: str) -> VerifyReport:
    return VerifyReport(0, 0, 0, "", None, f"not a valid export: {problem}")
