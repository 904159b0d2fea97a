"""What someone who rewrites an audit export can do: change leaves, recompute every hash, the
tree, the consistency proofs, and sign fresh checkpoints with keys of their own.

Used by the forgery tests to build exports that are internally consistent in every way a
verifier without pinned keys could check.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit.entry import leaf_json
from broker.audit.merkle import consistency_proof, leaf_hash, root_from_leaf_hashes
from broker.audit.note import Checkpoint, CosignatureSigner, NoteSigner, sign_note
from broker.audit.witness import append_cosignatures


async def drop_append_only(session: AsyncSession, *tables: str) -> None:
    """What an owner of the database can do: switch the append-only triggers off (in the
    session's transaction on PostgreSQL; for good on SQLite)."""
    postgres = (await session.connection()).dialect.name == "postgresql"
    for table in tables:
        if postgres:
            await session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_change"))
        else:
            await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            await session.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))


@dataclass
class ExportLog:
    entries: list[dict[str, Any]]
    checkpoints: list[dict[str, Any]]
    consistency: list[dict[str, Any]]
    manifest: dict[str, Any]
    extra_files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ExportLog:
        def lines(name: str) -> list[dict[str, Any]]:
            return [json.loads(x) for x in (path / name).read_text().splitlines()]

        return cls(lines("entries.jsonl"), lines("checkpoints.jsonl"), lines("consistency.jsonl"),
                   json.loads((path / "manifest.json").read_text()))

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        for name, rows in (("entries.jsonl", self.entries), ("checkpoints.jsonl", self.checkpoints),
                           ("consistency.jsonl", self.consistency)):
            (path / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        (path / "manifest.json").write_text(json.dumps({**self.manifest, "size": len(self.entries),
                                                        "checkpoints": len(self.checkpoints)}))
        for name, content in self.extra_files.items():
            (path / name).write_text(content)
        return path

    @property
    def origin(self) -> str:
        return str(self.manifest["origin"])

    def doc(self, seq: int) -> dict[str, Any]:
        return dict(json.loads(self.entries[seq]["leaf"]))

    def find(self, match: Callable[[dict[str, Any]], bool]) -> int:
        return next(i for i in range(len(self.entries)) if match(self.doc(i)))

    def set_doc(self, seq: int, doc: dict[str, Any]) -> None:
        leaf = leaf_json(doc)
        self.entries[seq] = {"seq": seq, "leaf": leaf.decode(), "leaf_hash": leaf_hash(leaf).hex()}

    def rewrite(self, seq: int, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.set_doc(seq, change(self.doc(seq)))

    def append(self, doc: dict[str, Any]) -> int:
        seq = len(self.entries)
        self.entries.append({})
        self.set_doc(seq, {**doc, "seq": seq})
        return seq

    def hashes(self) -> list[bytes]:
        return [bytes.fromhex(e["leaf_hash"]) for e in self.entries]

    def root(self, size: int) -> bytes:
        return root_from_leaf_hashes(self.hashes()[:size])

    def body(self, size: int) -> str:
        return Checkpoint(self.origin, size, self.root(size)).body()

    def sign(self, sizes: Sequence[int], signers: Sequence[NoteSigner],
             witnesses: Sequence[CosignatureSigner] = (), at: int = 1_790_000_000) -> None:
        """Checkpoints at ``sizes`` over the current leaves, signed by ``signers`` (and cosigned),
        with the consistency proofs between consecutive ones: all replaced."""
        self.checkpoints = []
        for size in sizes:
            note = sign_note(self.body(size), list(signers))
            lines = [w.cosign(self.body(size), at) for w in witnesses]
            self.checkpoints.append({"size": size, "note": append_cosignatures(note, lines)})
        self.prove()

    def add_checkpoint(self, size: int, signers: Sequence[NoteSigner],
                       witnesses: Sequence[CosignatureSigner] = (), at: int = 1_790_000_000) -> None:
        note = sign_note(self.body(size), list(signers))
        lines = [w.cosign(self.body(size), at) for w in witnesses]
        self.checkpoints.append({"size": size, "note": append_cosignatures(note, lines)})
        self.prove()

    def prove(self) -> None:
        hashes = self.hashes()
        sizes = [c["size"] for c in self.checkpoints if c["size"] > 0]
        self.consistency = [
            {"from": a, "to": b, "proof": [base64.b64encode(h).decode() for h in
                                           consistency_proof(a, b, lambda i: hashes[i])]}
            for a, b in pairwise(sizes)]

    def sizes(self) -> list[int]:
        return [c["size"] for c in self.checkpoints]
