"""The in-process outbox: fresh deliveries in commit order, sweeps on time and on demand, a cap."""

from __future__ import annotations

import pytest

from broker.outbox import Outbox
from broker.store.deliveries import QueuedDelivery


def _d(n: int) -> QueuedDelivery:
    return QueuedDelivery(f"d{n}", f"m{n}", "police", "nhs", "case_referral", "jwe", {})


def test_fresh_deliveries_are_taken_oldest_first_and_once() -> None:
    box = Outbox()
    box.committed([_d(1), _d(2)])
    box.committed([_d(3)])
    assert box.ready.is_set() and len(box) == 3
    assert [d.delivery_id for d in box.take(2)] == ["d1", "d2"]
    assert [d.delivery_id for d in box.take(10)] == ["d3"]
    assert box.take(10) == [] and len(box) == 0


def test_a_sweep_that_published_fresh_rows_takes_them_out() -> None:
    box = Outbox()
    box.committed([_d(1), _d(2)])
    box.published(["d1", "unknown"])
    assert [d.delivery_id for d in box.take(10)] == ["d2"]


def test_sweeps_come_every_sweep_s_and_at_once_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("broker.outbox.time.monotonic", lambda: now[0])
    box = Outbox(sweep_s=1.0)
    assert box.sweep_due()  # the first round reads the table
    assert not box.sweep_due()
    now[0] += 0.5
    assert not box.sweep_due()
    now[0] += 0.6
    assert box.sweep_due() and not box.sweep_due()
    box.ready.clear()
    box.sweep_soon()  # a route resumed, or a publish failed
    assert box.ready.is_set() and box.sweep_due()


def test_beyond_the_cap_deliveries_wait_in_the_table_for_a_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("broker.outbox.time.monotonic", lambda: 50.0)
    box = Outbox(max_fresh=2)
    assert box.sweep_due() and not box.sweep_due()
    box.committed([_d(1), _d(2), _d(3)])
    assert len(box) == 2
    assert box.sweep_due()  # d3 is only in the table: the next round reads it
