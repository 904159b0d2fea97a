"""The fast canonical-JSON path must produce exactly what the RFC 8785 reference produces."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.audit.entry import canonical_json

scalars = st.none() | st.booleans() | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1) | st.text()
documents = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400)
@given(documents)
def test_matches_rfc8785_for_any_json_without_floats(doc: object) -> None:
    assert canonical_json(doc) == rfc8785.dumps(doc)


def test_control_characters_and_unicode() -> None:
    doc = {"b": "\u0000\u001f\u007f\"\\\n\t\u2028é😀", "a": [1, True, None], "é": "x", "😀": 1}
    assert canonical_json(doc) == rfc8785.dumps(doc)


def test_floats_take_the_reference_path() -> None:
    assert canonical_json({"x": 1.5e-7}) == rfc8785.dumps({"x": 1.5e-7}) == b'{"x":1.5e-7}'


def test_audit_leaves_are_rfc8785() -> None:
    from datetime import UTC, datetime

    from broker.audit.entry import Actor, AuditEntry, DsaRef, EntryKind, FieldDigest, SubjectRef

    entry = AuditEntry(
        seq=7, kind=EntryKind.OVERRIDE_USED, at=datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC),
        actor=Actor(agency="nhs", auth="amqp"), subjects=(SubjectRef(pseudonym="ab", category="suspect"),),
        dsa=DsaRef(id="hiow-masp", version=1, clause="rca-nhs"), rules=("P7.override",),
        fields_disclosed=(FieldDigest(name="clinical_note", digest="x-y_z"),), reason="é \u0001 \"q\"",
        override={"authoriser_role": "caldicott_guardian", "review_status": "pending"},
        consent={"ref": "C-1", "status": "given"})
    assert entry.leaf_bytes() == rfc8785.dumps(
        {k: v for k, v in entry.model_dump(mode="json", exclude_none=True).items() if v not in ([], {})})
