"""Proofs from stored tree nodes in a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.audit.merkle import root_from_leaf_hashes, verify_consistency, verify_inclusion
from broker.service import BrokerService, init_state
from broker.store import raw
from broker.store.audit_log import read_checkpoints, read_entries
from broker.store.audit_models import AuditNodeRow
from broker.store.audit_proofs import entry_proof
from broker.store.audit_tree import consistency_proof, inclusion_proof, subtree_hash
from tests.integration.conftest import make_settings

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
BATCHES = [1, 3, 4, 7, 2, 5, 11]  # 33 entries, 7 checkpoints


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[BrokerService]:
    settings = make_settings(tmp_path, database_url)
    init_state(settings, AT.date())
    svc = await BrokerService.open(settings)
    for n in BATCHES:
        async with svc.exchange.audit.transaction() as batch:
            for i in range(n):
                batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                      actor=Actor(user_id=f"u{i}", auth="system")))
    yield svc
    await svc.close()


async def test_every_proof_verifies_against_every_checkpoint(service: BrokerService) -> None:
    async with service.exchange.sessions() as s:
        leaves = [r.leaf_hash for r in await read_entries(s)]
        checkpoints = [(c.size, c.root_hash) for c in await read_checkpoints(s)]
        nodes = (await s.execute(select(func.count()).select_from(AuditNodeRow))).scalar_one()
        assert nodes == 33 - (33).bit_count()  # each perfect subtree stored once, at append time
        assert [c[0] for c in checkpoints] == [1, 4, 8, 15, 17, 22, 33]
        for size, root in checkpoints:
            assert root_from_leaf_hashes(leaves[:size]) == root
            for seq in range(size):
                verify_inclusion(leaves[seq], seq, size, await inclusion_proof(s, seq, size), root)
            for old, old_root in checkpoints:
                if old < size:
                    verify_consistency(old, size, await consistency_proof(s, old, size), old_root, root)
        for start, end in [(0, 33), (8, 15), (5, 6), (16, 33), (3, 29), (0, 1)]:
            assert await subtree_hash(s, start, end) == root_from_leaf_hashes(leaves[start:end])


async def test_a_proof_is_two_indexed_reads_of_log_n_rows(service: BrokerService,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Proofs read on the driver connection (``broker/store/raw.py``): count what reaches it."""
    statements: list[str] = []
    fetch = raw.fetch

    async def record(session: Any, sql: str, *params: Any) -> Any:
        statements.append(sql)
        return await fetch(session, sql, *params)

    monkeypatch.setattr(raw, "fetch", record)
    async with service.exchange.sessions() as s:
        proof = await inclusion_proof(s, 0, 33)
        assert len(proof) == 6
        assert 1 <= len(statements) <= 2
        statements.clear()
        await consistency_proof(s, 17, 33)
        assert 1 <= len(statements) <= 2
        assert not any("leaf," in st or "leaf " in st for st in statements), "leaves never read"
        statements.clear()
        found = await entry_proof(s, 5, quorum=0)
        assert found.proof.index == 5
        assert len(statements) == 3, statements  # entry, checkpoint with cosignatures, nodes


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_log_without_stored_nodes_still_answers(service: BrokerService) -> None:
    """A database from before ``audit_node`` existed: nodes are recomputed from the leaves."""
    async with service.exchange.sessions() as s, s.begin():
        await s.execute(text("DROP TRIGGER audit_node_no_delete"))
        await s.execute(text("DELETE FROM audit_node"))
    async with service.exchange.sessions() as s:
        leaves = [r.leaf_hash for r in await read_entries(s)]
        root = root_from_leaf_hashes(leaves)
        for seq in (0, 16, 32):
            verify_inclusion(leaves[seq], seq, 33, await inclusion_proof(s, seq, 33), root)
        verify_consistency(15, 33, await consistency_proof(s, 15, 33),
                           root_from_leaf_hashes(leaves[:15]), root)
