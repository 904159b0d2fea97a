"""Case events from audit entries: who hears what, and nothing beyond ids, types and states."""

from __future__ import annotations

from datetime import UTC, datetime

from broker.audit.entry import Actor, AuditEntry, DsaRef, EntryKind, FieldDigest, SubjectRef
from broker.transport.events import EVENT_FIELDS, events_for

AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def _entry(kind: EntryKind, **fields: object) -> AuditEntry:
    return AuditEntry(seq=7, kind=kind, at=AT, actor=Actor(auth="system"), **fields)  # type: ignore[arg-type]


def test_a_disclosure_tells_the_recipient_a_delivery_waits_and_the_sender_it_is_queued() -> None:
    entry = _entry(EntryKind.DISCLOSED, message_id="m", masp_type="case_referral", case_id="C-1",
                   sender="police", recipient="nhs", dsa=DsaRef(id="d", version=1, clause="c"),
                   subjects=(SubjectRef(pseudonym="ab" * 32, category="victim"),),
                   fields_disclosed=(FieldDigest(name="victim_name", digest="x"),), reason="why")
    events = dict(events_for(entry))
    assert set(events) == {"nhs.delivery.waiting", "police.delivery.queued"}
    body = events["nhs.delivery.waiting"]
    assert body == {"event": "delivery.waiting", "seq": 7, "at": AT.isoformat(), "agency": "nhs",
                    "kind": "disclosed", "message_id": "m", "masp_type": "case_referral",
                    "case_id": "C-1", "sender": "police", "recipient": "nhs", "state": "queued"}
    assert set(body) - {"event", "seq", "at", "agency", "kind", "state"} <= set(EVENT_FIELDS)


def test_escalations_reach_the_sender_and_ops_and_unknown_audiences_nobody() -> None:
    escalated = _entry(EntryKind.ESCALATED, delivery_id="d", sender="nhs", recipient="police")
    assert [k for k, _ in events_for(escalated)] == ["nhs.delivery.escalated", "ops.delivery.escalated"]
    ingress_refusal = _entry(EntryKind.REFUSED, rules=("ingress.malformed",))  # no verified sender
    assert list(events_for(ingress_refusal)) == []
    forged = _entry(EntryKind.ACKNOWLEDGED, sender="police.#", recipient="nhs")
    assert list(events_for(forged)) == []
    assert list(events_for(_entry(EntryKind.AUDIT_VIEWED))) == []
