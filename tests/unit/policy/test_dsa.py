"""Loading DSA files: strict, named errors, and a policy hash that ignores layout."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
import yaml

from broker.errors import ConfigurationError
from broker.policy import DsaBundle, DsaInvalid, load_bundle
from broker.policy.dsa import parse_agreement
from tests.unit.policy.builders import EXPIRED, SAMPLE, SAMPLE_DIR, agreement


def test_default_directory_loads_the_sample_only() -> None:
    b = load_bundle(SAMPLE_DIR)
    assert [(a.id, a.version) for a in b.agreements] == [("hiow-masp", 1)]
    assert b.source_of(b.agreements[0]) == str(SAMPLE)
    assert re.fullmatch(r"[0-9a-f]{64}", b.policy_hash)


def test_explicit_files_and_directories_combine_in_version_order() -> None:
    b = load_bundle([EXPIRED, SAMPLE_DIR])
    assert [(a.id, a.version) for a in b.agreements] == [("hiow-masp", 0), ("hiow-masp", 1)]
    assert b.policy_hash == load_bundle([SAMPLE, EXPIRED]).policy_hash
    assert b.policy_hash != load_bundle(SAMPLE).policy_hash


def test_policy_hash_ignores_whitespace_comments_and_key_order(tmp_path: Path) -> None:
    raw = yaml.safe_load(SAMPLE.read_text())
    raw = dict(reversed(list(raw.items())))
    (tmp_path / "reflowed.yaml").write_text(
        "# reformatted copy\n" + yaml.safe_dump(raw, default_flow_style=True, width=70)
    )
    assert load_bundle(tmp_path).policy_hash == load_bundle(SAMPLE).policy_hash


def test_policy_hash_changes_with_content() -> None:
    a = agreement()
    changed = agreement(title="Another title")
    assert DsaBundle((a,)).policy_hash != DsaBundle((changed,)).policy_hash


def test_clause_from_is_read_from_the_yaml_key() -> None:
    clause = load_bundle(SAMPLE).agreements[0].clauses[0]
    assert clause.from_ == "police"
    assert clause.model_dump(by_alias=True)["from"] == "police"


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = SAMPLE.read_text()
    assert old in text
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    regime: dpa2018_part3\n",
            "    regime: dpa2018_part3\n    colour: red\n",
            r"clauses\[0\]\(cr-police-probation\)\.colour: Extra inputs",
        ),
        (
            "      - health_flags\n",
            "      - shoe_size\n",
            r"clauses\[0\]\(cr-police-probation\)\.data_classes\[8\]",
        ),
        ("to: [nhs]", "to: [nhs, council]", r"clauses\[2\]\(cr-police-nhs\)\.to\[1\]"),
        ("status: active", "status: paused", r"status"),
        ("version: 1", "version: one", r"version"),
        ("    retention_days: 2555\n", "    retention_days: 0\n", r"retention_days"),
        ("  - id: cr-probation-police", "  - id: cr-police-probation", "duplicate clause id"),
        ("title: Hampshire", "title: Hampshire\ntitle: again", "duplicate key 'title'"),
        ("parties: [police", "parties: [police, [", "line"),
        ("  victim: [police, advocacy]", "  perpetrator: [police]", r"consent_recorders\.perpetrator"),
        ("  victim: [police, advocacy]", "  victim: [police, council]", r"consent_recorders\.victim\[1\]"),
        (
            "    # Victim-centred: nothing reaches the advocacy service until the victim agrees.\n",
            "    consent_kind: offender\n",
            r"clauses\[4\]\(cr-police-advocacy\)\.consent_kind",
        ),
    ],
    ids=[
        "unknown key",
        "unknown class",
        "unknown agency",
        "bad status",
        "bad version",
        "zero retention",
        "duplicate clause",
        "duplicate key",
        "yaml syntax",
        "unknown consent kind",
        "unknown recorder",
        "unknown clause consent kind",
    ],
)
def test_invalid_files_name_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = _broken(tmp_path, old, new)
    with pytest.raises(DsaInvalid) as info:
        load_bundle(path)
    assert str(path) in info.value.detail
    assert re.search(expected, info.value.detail), info.value.detail
    assert isinstance(info.value, ConfigurationError)


def test_missing_and_empty_locations(tmp_path: Path) -> None:
    with pytest.raises(DsaInvalid, match="no such DSA file"):
        load_bundle(tmp_path / "nope.yaml")
    with pytest.raises(DsaInvalid, match="no DSA files found"):
        load_bundle(tmp_path)


def test_same_version_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(SAMPLE.read_text())
    (tmp_path / "b.yaml").write_text(SAMPLE.read_text())
    with pytest.raises(DsaInvalid, match="also defined in"):
        load_bundle(tmp_path)
    with pytest.raises(DsaInvalid, match="defined twice"):
        DsaBundle((agreement(), agreement()))


def test_not_a_mapping_and_unsafe_tags_are_refused() -> None:
    with pytest.raises(DsaInvalid, match="one mapping"):
        parse_agreement("- just\n- a list\n")
    with pytest.raises(DsaInvalid):
        parse_agreement("id: !!python/object/apply:os.system ['true']\n")


def test_yaml_anchors_resolve_to_the_same_text() -> None:
    a = load_bundle(SAMPLE).agreements[0]
    by_id = {c.id: c for c in a.clauses}
    assert by_id["cr-police-nhs"].lawful_basis == by_id["cr-police-probation"].lawful_basis
    assert "s35(2)(b)" in by_id["cr-police-nhs"].lawful_basis


# --- who may record consent -------------------------------------------------------------

IN_FORCE = date(2026, 11, 21)


@pytest.mark.parametrize(
    ("agency", "kind", "expected"),
    [
        ("police", "victim", True),  # at the referral
        ("advocacy", "victim", True),  # works with her
        ("probation", "victim", False),
        ("nhs", "victim", False),
        ("police", "intervention", True),  # the referrer...
        ("probation", "intervention", True),
        ("nhs", "intervention", True),  # ...or the treating team
        ("advocacy", "intervention", False),
        ("police", "perpetrator", False),  # not a kind of consent
        ("council", "victim", False),  # not an agency
    ],
)
def test_sample_consent_recorders(agency: str, kind: str, expected: bool) -> None:
    assert load_bundle(SAMPLE).may_record_consent(agency, kind, IN_FORCE) is expected


def test_recorders_count_only_under_an_agreement_in_force() -> None:
    sample = load_bundle(SAMPLE)
    assert sample.may_record_consent("police", "victim", date(2026, 1, 1))
    assert sample.may_record_consent("police", "victim", date(2027, 12, 31))
    assert not sample.may_record_consent("police", "victim", date(2025, 12, 31))
    assert not sample.may_record_consent("police", "victim", date(2028, 1, 1))
    for status in ("suspended", "terminated"):
        held = DsaBundle((agreement(status=status, consent_recorders={"victim": ["police"]}),))
        assert not held.may_record_consent("police", "victim", IN_FORCE)
    both = load_bundle([SAMPLE, EXPIRED])
    assert both.may_record_consent("police", "victim", date(2025, 3, 1))  # under v0
    assert not both.may_record_consent("advocacy", "victim", date(2025, 3, 1))  # v0 named police only
    assert both.may_record_consent("advocacy", "victim", IN_FORCE)


def test_a_recorder_who_is_not_a_party_records_nothing() -> None:
    """Lint refuses it; the answer does not depend on lint having run."""
    b = DsaBundle((agreement(parties=["police", "probation"], consent_recorders={"victim": ["advocacy"]}),))
    assert not b.may_record_consent("advocacy", "victim", IN_FORCE)


def test_no_recorders_by_default() -> None:
    a = parse_agreement(yaml.safe_dump({k: v for k, v in yaml.safe_load(SAMPLE.read_text()).items()
                                        if k != "consent_recorders"}))
    assert a.consent_recorders == {}
    assert all(c.consent_kind == "victim" for c in a.clauses)
    assert not DsaBundle((a,)).may_record_consent("police", "victim", IN_FORCE)
