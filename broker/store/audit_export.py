"""Reading the audit log out of the database: verification in place and export for offline checks.

Export layout (``masp audit export --out DIR``):
``entries.jsonl``  one line per entry: ``{"seq", "leaf" (the canonical JSON, verbatim), "leaf_hash"}``
``checkpoints.jsonl``  one line per checkpoint: ``{"size", "note"}`` (C2SP signed notes)
``log.vkey``  the note verifier key of the log, for convenience; verifiers should pin their own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from broker.audit.note import NoteVerifier
from broker.audit.verify import VerifyReport, verify_log
from broker.store.audit_log import read_checkpoints, read_entries

if TYPE_CHECKING:
    from broker.service import BrokerService

_PAGE = 5000


async def _pages(service: BrokerService) -> AsyncIterator[list[tuple[int, bytes, bytes]]]:
    after = -1
    while True:
        async with service.exchange.sessions() as session:
            rows = await read_entries(session, after=after, limit=_PAGE)
        if not rows:
            return
        yield [(r.seq, r.leaf, r.leaf_hash) for r in rows]
        after = rows[-1].seq


async def verify_database(service: BrokerService, verifier: NoteVerifier | None = None) -> VerifyReport:
    async with service.exchange.sessions() as session:
        checkpoints = [(c.size, c.note) for c in await read_checkpoints(session)]
    entries: list[tuple[int, bytes, bytes]] = []
    async for page in _pages(service):
        entries.extend(page)
    return verify_log(entries, checkpoints, verifier or service.exchange.audit.signer.verifier())


async def export_log(service: BrokerService, out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with (out / "entries.jsonl").open("w", encoding="utf-8") as fh:
        async for page in _pages(service):
            for seq, leaf, lh in page:
                fh.write(json.dumps({"seq": seq, "leaf": leaf.decode("utf-8"), "leaf_hash": lh.hex()},
                                    ensure_ascii=False) + "\n")
                count += 1
    async with service.exchange.sessions() as session:
        checkpoints = await read_checkpoints(session)
    with (out / "checkpoints.jsonl").open("w", encoding="utf-8") as fh:
        for c in checkpoints:
            fh.write(json.dumps({"size": c.size, "note": c.note}) + "\n")
    (out / "log.vkey").write_text(service.exchange.audit.signer.verifier().vkey + "\n")
    return count


def _read_entries(path: Path) -> Iterator[tuple[int, bytes, bytes]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            yield int(row["seq"]), row["leaf"].encode("utf-8"), bytes.fromhex(row["leaf_hash"])


def verify_export(export_dir: Path, vkey: str | None = None) -> VerifyReport:
    """Verify an export with only its files and a pinned verifier key (default: its own)."""
    key = vkey or (export_dir / "log.vkey").read_text().strip()
    verifier = NoteVerifier.from_vkey(key)
    with (export_dir / "checkpoints.jsonl").open(encoding="utf-8") as fh:
        checkpoints = [(int(r["size"]), str(r["note"])) for r in map(json.loads, fh)]
    return verify_log(_read_entries(export_dir / "entries.jsonl"), checkpoints, verifier)
