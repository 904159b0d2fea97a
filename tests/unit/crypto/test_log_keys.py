"""The audit log's own keys: created once, rotated through a pending key, re-read when changed."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.audit.note import NoteSigner, NoteVerifier
from broker.crypto.log_keys import LogKeyStore, LogSigners, trusted_log_keys
from broker.errors import ConfigurationError

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
ORIGIN = "masp.audit/test"


def test_the_first_key_is_created_once_in_note_encodings(tmp_path: Path) -> None:
    store = LogKeyStore(tmp_path, ORIGIN)
    key = store.create(NOW)
    assert key is not None and store.create(NOW) is None  # kept
    skey = tmp_path / "log" / f"{key.id}.skey"
    assert stat.S_IMODE(skey.stat().st_mode) == 0o600
    assert NoteSigner.from_skey(skey.read_text().strip()).vkey == key.vkey
    assert NoteVerifier.from_vkey((tmp_path / "log" / f"{key.id}.vkey").read_text().strip()).name == ORIGIN
    with pytest.raises(ConfigurationError, match=r"not 'masp\.audit/other'"):
        LogKeyStore(tmp_path, "masp.audit/other").state()
    with pytest.raises(ConfigurationError, match="run `masp keys init`"):
        LogKeyStore(tmp_path / "none", ORIGIN).state()


def test_a_rotation_goes_pending_co_signing_then_current(tmp_path: Path) -> None:
    store = LogKeyStore(tmp_path, ORIGIN)
    first = store.create(NOW)
    assert first is not None
    signers = LogSigners(store, now=NOW)
    assert [s.vkey for s in signers.at(NOW)] == [first.vkey]

    pending = store.begin_rotation(NOW)
    assert store.begin_rotation(NOW) == pending  # an interrupted rotation reuses its key
    signers.refresh(NOW)
    assert [s.vkey for s in signers.at(NOW)] == [first.vkey]  # a pending key signs nothing
    assert not signers.knows(bytes.fromhex(pending.id))
    assert [v.vkey for v in store.verifiers(NOW)] == [first.vkey]

    store.start_signing(pending.id)  # inside the rotation entry's unit of work
    signers.refresh(NOW)
    assert [s.vkey for s in signers.at(NOW)] == [first.vkey, pending.vkey]
    assert signers.knows(bytes.fromhex(pending.id))

    store.finish_rotation(pending.id, NOW + timedelta(hours=1))
    signers.refresh(NOW)
    assert signers.current.vkey == pending.vkey
    assert [s.vkey for s in signers.at(NOW)] == [pending.vkey, first.vkey]  # the overlap
    assert [s.vkey for s in signers.at(NOW + timedelta(hours=1))] == [pending.vkey]  # retired
    assert [v.vkey for v in store.verifiers(NOW + timedelta(hours=2))] == [pending.vkey]
    assert [k.id for k in store.all_keys()] == [first.id, pending.id]
    assert trusted_log_keys(tmp_path, NOW)[0] == ORIGIN
    with pytest.raises(ConfigurationError, match="not the one being rotated in"):
        store.finish_rotation(pending.id, NOW)


def test_a_retired_key_whose_private_file_was_destroyed_is_not_needed(tmp_path: Path) -> None:
    store = LogKeyStore(tmp_path, ORIGIN)
    first = store.create(NOW)
    assert first is not None
    new = store.begin_rotation(NOW)
    store.finish_rotation(new.id, NOW + timedelta(minutes=5))
    (tmp_path / "log" / f"{first.id}.skey").unlink()
    assert [s.vkey for s in LogSigners(store, now=NOW + timedelta(hours=1)).at(NOW + timedelta(hours=1))] == [
        new.vkey]


def test_a_tampered_state_file_is_refused(tmp_path: Path) -> None:
    store = LogKeyStore(tmp_path, ORIGIN)
    key = store.create(NOW)
    assert key is not None
    path = tmp_path / "log" / "state.json"
    doc = json.loads(path.read_text())
    doc["current"] = "00000000"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigurationError, match="names a log key it does not hold"):
        store.state()
    path.write_text("{")
    with pytest.raises(ConfigurationError, match="unreadable"):
        store.state()


def test_a_key_mounted_under_a_fixed_name_is_found_by_its_id(tmp_path: Path) -> None:
    """Deployments mount the current key as ``current.skey`` (deploy/compose.yaml, k8s)."""
    store = LogKeyStore(tmp_path, ORIGIN)
    key = store.create(NOW)
    assert key is not None
    named = tmp_path / "log" / f"{key.id}.skey"
    (tmp_path / "log" / "current.skey").write_text(named.read_text())
    named.unlink()
    assert store.signer(key.id).vkey == key.vkey
    (tmp_path / "log" / "current.skey").write_text("PRIVATE+KEY+nonsense\n")
    with pytest.raises(ConfigurationError, match=r"current\.skey: not a log signing key"):
        store.signer(key.id)
