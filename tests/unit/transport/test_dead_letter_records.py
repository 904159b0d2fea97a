"""Reading RabbitMQ's x-death record, and keeping untrusted header values to bounded codes."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.transport.dead_letters import REPLAY_HEADER, DeadMessage, Death

AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_the_newest_death_is_read() -> None:
    headers = {"x-death": [{"queue": "ns.inbox.nhs", "reason": "delivery_limit", "count": 1, "time": AT},
                           {"queue": "ns.masp.acks", "reason": "rejected", "count": 3, "time": AT}]}
    assert Death.from_headers(headers) == Death("ns.inbox.nhs", "delivery_limit", 1, AT)


def test_missing_or_hostile_headers_become_codes() -> None:
    assert Death.from_headers({}) == Death("unknown", "unknown", 1, None)
    hostile = {"x-death": [{"queue": b"inbox.nhs <script>", "reason": "rejected; DROP", "count": "x"}]}
    death = Death.from_headers(hostile)
    assert death == Death("inbox.nhsscript", "rejectedDROP", 1, None)


def test_a_redelivered_dead_letter_has_the_same_fingerprint_a_replayed_one_not() -> None:
    death = Death("q", "rejected", 1, AT)
    first = DeadMessage(b"body", {}, "m-1")
    assert first.fingerprint(death) == DeadMessage(b"body", {}, "m-1").fingerprint(death)
    assert first.fingerprint(death) != DeadMessage(b"body", {}, "m-2").fingerprint(death)
    replayed = DeadMessage(b"body", {REPLAY_HEADER: "dl-1"}, "m-1")
    assert first.fingerprint(death) != replayed.fingerprint(death)
