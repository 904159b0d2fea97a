"""Repeated ingress refusals: the first of a kind is audited at once, the rest once per window.

On an injected clock (``broker.clock.FrozenClock``): which refusal opens a window, what a
summary holds (counts, digests and a hash over all of them, never anything a sender chose),
when it is due, and that its leaf is canonical like every other.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import rfc8785

from broker.audit.entry import AuditEntry, EntryKind, payload_digest
from broker.audit.refusals import RefusalKey, RefusalWindows
from broker.audit.verify import _leaf_problem
from broker.clock import FrozenClock

NHS_JUNK = RefusalKey("nhs", "amqp", "malformed")
NHS_LIMITED = RefusalKey("nhs", "amqp", "rate-limited")
ANONYMOUS = RefusalKey(None, "amqp", "unauthorized")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 21, 9, 0, tzinfo=UTC))


def _digests(n: int) -> list[str]:
    return [payload_digest(f"junk {i}") for i in range(n)]


def test_first_of_a_kind_is_written_the_rest_counted_into_one_summary(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60), keep_digests=4)
    digests = _digests(10)
    assert windows.note(NHS_JUNK, digests[0], clock(), "p1") is True  # audited at once, in full
    for d in digests[1:]:
        clock.advance(seconds=1)
        assert windows.note(NHS_JUNK, d, clock(), "p1") is False
    assert windows.pending == 9
    assert windows.due(clock()) == []  # the window is still open
    assert windows.next_close() == datetime(2026, 11, 21, 9, 1, tzinfo=UTC)

    clock.at = datetime(2026, 11, 21, 9, 1, tzinfo=UTC)  # the window closes
    (summary,) = windows.due(clock())
    assert summary.key == NHS_JUNK and summary.count == 9
    assert summary.digests == tuple(digests[1:5])  # the first keep_digests of those counted
    chain = hashlib.sha256(b"".join(d.encode() + b"\n" for d in digests[1:])).hexdigest()
    assert summary.digests_sha256 == f"sha-256:{chain}"  # over all of them, in order
    assert (summary.first_at, summary.last_at) == (datetime(2026, 11, 21, 9, 0, 1, tzinfo=UTC),
                                                   datetime(2026, 11, 21, 9, 0, 9, tzinfo=UTC))
    assert windows.due(clock()) == [] and windows.pending == 0  # handed over once
    assert windows.next_close() is None

    # the next refusal of the kind opens a new window: written at once again
    assert windows.note(NHS_JUNK, digests[0], clock(), "p1") is True


def test_kinds_agencies_and_channels_are_counted_apart(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60))
    for key in (NHS_JUNK, NHS_LIMITED, ANONYMOUS, RefusalKey("nhs", "agency-jwt", "malformed"),
                RefusalKey("police", "amqp", "malformed")):
        assert windows.note(key, "sha-256:00", clock()) is True
        assert windows.note(key, "sha-256:00", clock()) is False
    clock.advance(seconds=60)
    assert sorted((s.key.agency or "", s.key.channel, s.key.code, s.count)
                  for s in windows.due(clock())) == [
        ("", "amqp", "unauthorized", 1), ("nhs", "agency-jwt", "malformed", 1),
        ("nhs", "amqp", "malformed", 1), ("nhs", "amqp", "rate-limited", 1),
        ("police", "amqp", "malformed", 1)]


def test_a_window_with_nothing_counted_gives_no_summary(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60))
    assert windows.note(ANONYMOUS, "sha-256:00", clock()) is True
    assert windows.next_close() is None  # nothing to flush: no timer needed
    clock.advance(seconds=61)
    assert windows.due(clock()) == []
    assert windows.note(ANONYMOUS, "sha-256:00", clock()) is True


def test_a_late_refusal_closes_its_expired_window_before_a_flush_ran(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60))
    windows.note(NHS_JUNK, "sha-256:01", clock())
    windows.note(NHS_JUNK, "sha-256:02", clock())
    clock.advance(seconds=90)  # no flush yet, and the next one arrives
    assert windows.note(NHS_JUNK, "sha-256:03", clock()) is True
    (summary,) = windows.due(clock())  # the old window's summary, waiting for the next write
    assert summary.count == 1 and summary.digests == ("sha-256:02",)


def test_drain_hands_over_open_windows_and_restore_takes_them_back(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60))
    for _ in range(3):
        windows.note(NHS_LIMITED, "sha-256:00", clock())
    summaries = windows.drain()  # shutting down: nothing counted is lost
    assert [s.count for s in summaries] == [2] and windows.pending == 0
    windows.restore(summaries)  # the write failed: kept for the next attempt
    assert windows.pending == 2 and windows.due(clock()) == summaries


def test_a_first_refusal_that_was_not_written_is_first_again(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60))
    assert windows.note(NHS_JUNK, "sha-256:00", clock()) is True
    windows.reopen(NHS_JUNK)  # its audit transaction failed
    assert windows.note(NHS_JUNK, "sha-256:00", clock()) is True


def test_memory_is_bounded_by_keys_and_kept_digests(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60), keep_digests=16)
    for d in _digests(5000):
        windows.note(NHS_JUNK, d, clock())
    (summary,) = windows.drain()
    assert summary.count == 4999 and len(summary.digests) == 16


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RefusalWindows(timedelta(0))


def test_summary_entry_holds_codes_counts_and_digests_only(clock: FrozenClock) -> None:
    windows = RefusalWindows(timedelta(seconds=60), keep_digests=2)
    for d in _digests(4):
        windows.note(NHS_JUNK, d, clock(), "sha-256:policy")
        clock.advance(seconds=5)
    clock.advance(seconds=60)
    (summary,) = windows.due(clock())
    entry = summary.entry(41, clock())
    assert entry.kind == EntryKind.REFUSED and entry.decision == "deny"
    assert entry.actor.agency == "nhs" and entry.actor.auth == "amqp"
    assert entry.rules == ("ingress.malformed",) and entry.policy_hash == "sha-256:policy"
    assert entry.repeated is not None and entry.repeated.count == 3
    assert entry.message_id is None and entry.sender is None and entry.payload_digest is None
    assert entry.subjects == () and entry.fields_disclosed == ()
    assert entry.reason == ("repeated: 3 more refusals of this kind in the window opened at "
                            "2026-11-21T09:00:00+00:00")

    leaf = entry.leaf_bytes()
    assert leaf == rfc8785.dumps(orjson.loads(leaf))  # canonical: masp audit verify accepts it
    assert _leaf_problem(41, leaf) is None
    assert AuditEntry.from_leaf(leaf) == entry
    doc = orjson.loads(leaf)
    assert doc["repeated"] == {
        "count": 3, "digests": list(summary.digests), "digests_sha256": summary.digests_sha256,
        "first_at": "2026-11-21T09:00:05Z", "last_at": "2026-11-21T09:00:15Z"}


def test_an_entry_without_a_summary_keeps_its_old_leaf_bytes(clock: FrozenClock) -> None:
    """``repeated`` is optional and left out when empty: leaves written before it verify as they are."""
    entry = AuditEntry(seq=0, kind=EntryKind.REFUSED, at=clock(), actor={"auth": "amqp"},
                       rules=("ingress.malformed",), decision="deny")
    assert b"repeated" not in entry.leaf_bytes()
