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


def test_leaf_models_declare_their_fields_in_sorted_order() -> None:
    """``AuditEntry.leaf_bytes`` lets pydantic-core write fields in declaration order."""
    from broker.audit.entry import Actor, AuditEntry, DsaRef, FieldDigest, Repeated, SubjectRef

    for model in (Actor, AuditEntry, DsaRef, FieldDigest, Repeated, SubjectRef):
        names = list(model.model_fields)
        assert names == sorted(names), model.__name__


def _entries() -> st.SearchStrategy[object]:
    from datetime import UTC, timedelta, timezone

    from broker.audit.entry import Actor, AuditEntry, DsaRef, EntryKind, FieldDigest, Repeated, SubjectRef

    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)  # no lone surrogates
    maybe = st.none() | text
    zones = st.sampled_from([UTC, timezone(timedelta(hours=1)), timezone(timedelta(minutes=-330)), None])
    moments = st.builds(lambda d, z: d.replace(tzinfo=z), st.datetimes(), zones)
    mappings = st.none() | st.dictionaries(text, text, max_size=3)
    return st.builds(
        AuditEntry, seq=st.integers(0, 2**53 - 1), kind=st.sampled_from(list(EntryKind)), at=moments,
        actor=st.builds(Actor, agency=maybe, auth=text, role=maybe, user_id=maybe),
        message_id=maybe, reason=maybe, case_id=maybe, retention_until=st.none() | moments,
        subjects=st.lists(st.builds(SubjectRef, pseudonym=text, category=text), max_size=2).map(tuple),
        dsa=st.none() | st.builds(DsaRef, id=text, version=st.integers(0, 99), clause=maybe),
        rules=st.lists(text, max_size=3).map(tuple), fields_withheld=st.lists(text, max_size=3).map(tuple),
        fields_disclosed=st.lists(st.builds(FieldDigest, name=text, digest=text), max_size=3).map(tuple),
        consent=mappings, override=mappings,
        repeated=st.none() | st.builds(Repeated, count=st.integers(1, 2**53 - 1),
                                       digests=st.lists(text, min_size=1, max_size=3).map(tuple),
                                       digests_sha256=text, first_at=moments, last_at=moments))


@settings(max_examples=300)
@given(_entries())
def test_any_entry_leaf_is_rfc8785_of_its_dump(entry: object) -> None:
    from broker.audit.entry import AuditEntry

    assert isinstance(entry, AuditEntry)
    doc = {k: v for k, v in entry.model_dump(mode="json", exclude_none=True).items()
           if v not in ([], {})}
    assert entry.leaf_bytes() == rfc8785.dumps(doc)
    assert entry.leaf_bytes() == entry._leaf_bytes_via_dict()


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=8), documents, max_size=6), st.booleans())
def test_verifier_accepts_exactly_the_canonical_form(doc: dict[str, object], shuffle: bool) -> None:
    """The verifier's fast canonical check agrees with re-serialising through ``leaf_json``."""
    import json

    from broker.audit.entry import leaf_json
    from broker.audit.verify import _leaf_problem

    doc = {**doc, "kind": "disclosed", "seq": 3}
    canonical = leaf_json(doc)
    assert _leaf_problem(3, canonical) is None
    items = list(doc.items())
    if shuffle:
        items.reverse()
    other = json.dumps(dict(items), ensure_ascii=False, separators=(",", ":")).encode()
    assert (_leaf_problem(3, other) is None) == (other == canonical)
    spaced = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode()
    assert (_leaf_problem(3, spaced) is None) == (spaced == canonical)
    escaped = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()  # \uXXXX for non-ASCII
    assert (_leaf_problem(3, escaped) is None) == (escaped == canonical)


def test_verifier_refuses_non_canonical_leaves() -> None:
    from broker.audit.verify import _leaf_problem

    assert _leaf_problem(1, b'{"kind":"x","seq":1}') is None
    for bad in (b'{"seq":1,"kind":"x"}', b'{"kind":"x","seq":1,"a":{"c":1,"b":2}}',
                b'{"kind":"x","seq":1,"n":NaN}', b'{"kind":"\\u0078","seq":1}',
                b'{"kind":"x", "seq":1}', b'{"kind":"x","kind":"x","seq":1}'):
        assert _leaf_problem(1, bad) is not None, bad
    assert "not JSON" in (_leaf_problem(1, b'{"kind":"x","seq":1') or "")
    assert "says seq" in (_leaf_problem(2, b'{"kind":"x","seq":1}') or "")


def test_verifier_agrees_with_rfc8785_on_every_ascii_character() -> None:
    """Each ASCII character in a key and in a value: accepted in its RFC 8785 form only."""
    from broker.audit.verify import _leaf_problem

    for code in range(0x80):
        char = chr(code)
        doc = {"a" + char: char + "v", "kind": "x", "seq": 1}  # "a..." sorts first
        canonical = rfc8785.dumps(doc)
        assert _leaf_problem(1, canonical) is None, (code, canonical)
        written = rfc8785.dumps(char)[1:-1]  # how RFC 8785 writes the character
        value = b'"' + written + b'v"'
        assert canonical.count(value) == 1
        longhand = b"\\u%04x" % code
        if written != longhand:  # written short or verbatim: the \u00xx form is not canonical
            assert _leaf_problem(1, canonical.replace(value, b'"' + longhand + b'v"')) is not None, code
        if written.startswith(b"\\u") and written[2:].upper() != written[2:]:  # hex digits: lower-case
            assert _leaf_problem(1, canonical.replace(value, b'"' + b"\\u" + written[2:].upper() + b'v"')) \
                is not None, code


def test_verifier_orders_keys_by_utf16_code_units() -> None:
    """U+E000 sorts after U+1F600 in UTF-16 (a surrogate pair starts at 0xD83D), before it by code point."""
    from broker.audit.verify import _leaf_problem

    doc = {"kind": "x", "seq": 1, "\ue000": 1, "😀": 2}
    canonical = rfc8785.dumps(doc)
    assert canonical.index("😀".encode()) < canonical.index("\ue000".encode())
    assert _leaf_problem(1, canonical) is None
    by_code_point = canonical.replace(b'"\xf0\x9f\x98\x80":2,"\xee\x80\x80":1',
                                      b'"\xee\x80\x80":1,"\xf0\x9f\x98\x80":2')
    assert by_code_point != canonical
    assert _leaf_problem(1, by_code_point) is not None
    bmp = {"kind": "x", "seq": 1, "é": "ü", "\u2028": "\ufeff"}
    assert _leaf_problem(1, rfc8785.dumps(bmp)) is None


def test_verifier_refuses_integers_without_an_rfc8785_form() -> None:
    from broker.audit.verify import _leaf_problem

    assert _leaf_problem(1, b'{"kind":"x","n":9007199254740991,"seq":1}') is None
    assert _leaf_problem(1, b'{"kind":"x","n":9007199254740993,"seq":1}') is not None
    assert _leaf_problem(1, b'{"kind":"x","n":1e400,"seq":1}') is not None
    assert _leaf_problem(1, b'{"kind":"x","seq":1,"s":"\\ud800"}') is not None  # lone surrogate


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=8), documents, max_size=6))
def test_verifier_accepts_what_rfc8785_writes(doc: dict[str, object]) -> None:
    """Whatever the keys and strings (astral characters included), the reference form passes."""
    from broker.audit.verify import _leaf_problem

    doc = {**doc, "kind": "disclosed", "seq": 3}
    assert _leaf_problem(3, rfc8785.dumps(doc)) is None


def test_free_form_mapping_keys_sort_by_utf16_in_leaves() -> None:
    """An override key beyond U+FFFF sorts before one from U+E000 up, as RFC 8785 orders them."""
    from datetime import UTC, datetime

    from broker.audit.entry import Actor, AuditEntry, EntryKind
    from broker.audit.verify import _leaf_problem

    entry = AuditEntry(seq=4, kind=EntryKind.OVERRIDE_USED, at=datetime(2026, 1, 2, tzinfo=UTC),
                       actor=Actor(agency="nhs", auth="amqp"), override={"\ue000": "a", "😀": "b"})
    doc = {k: v for k, v in entry.model_dump(mode="json", exclude_none=True).items() if v not in ([], {})}
    assert entry.leaf_bytes() == rfc8785.dumps(doc)
    assert _leaf_problem(4, entry.leaf_bytes()) is None
