"""The lint gate: a bundle is enforced only if lint finds no error in it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.policy import DsaInvalid, DsaRejected, load_bundle, load_enforced_bundle
from tests.dsa_fixtures import ADDED_CLAUSE, overlapping_dsa_dir
from tests.unit.policy.builders import EXPIRED, SAMPLE, SAMPLE_DIR

TODAY = date(2026, 11, 21)


def test_clean_files_load_as_load_bundle_loads_them() -> None:
    assert load_enforced_bundle(SAMPLE_DIR, TODAY).policy_hash == load_bundle(SAMPLE_DIR).policy_hash
    # Warnings (here: expired) need a human look but do not stop enforcement.
    both = [SAMPLE, EXPIRED]
    assert load_enforced_bundle(both, TODAY).policy_hash == load_bundle(both).policy_hash


def test_an_overlapping_clause_refuses_the_whole_bundle(tmp_path: Path) -> None:
    overlapping_dsa_dir(tmp_path)
    load_bundle(tmp_path)  # it parses: only lint finds it wrong
    with pytest.raises(DsaRejected) as info:
        load_enforced_bundle(tmp_path, TODAY)
    rejected = info.value
    assert isinstance(rejected, DsaInvalid) and isinstance(rejected, ConfigurationError)
    assert rejected.code == "dsa-rejected"
    assert rejected.detail.startswith(f"1 lint error(s) in {tmp_path};")
    assert [(f.severity, f.rule) for f in rejected.findings] == [("error", "clause.overlap")]
    assert rejected.problem()["errors"] == 1
    line = str(rejected.findings[0])
    assert "\n" not in line
    assert ADDED_CLAUSE in line and "cr-police-advocacy" in line
    assert line.endswith("disagree on requires_consent")


def test_every_error_is_carried_warnings_are_not(tmp_path: Path) -> None:
    text = SAMPLE.read_text()
    text = text.replace("  victim: [police, advocacy]\n", "  victim: [police, council_housing]\n", 1)
    assert "council_housing" in text
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(DsaInvalid) as parse_error:  # not an agency: a parse error, not lint
        load_enforced_bundle(tmp_path / "bad.yaml", TODAY)
    assert not isinstance(parse_error.value, DsaRejected)

    text = SAMPLE.read_text().replace("  victim: [police, advocacy]\n", "", 1)
    text = text.replace("review_date: 2027-06-30", "review_date: 2026-06-30", 1)
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(DsaRejected) as info:
        load_enforced_bundle(tmp_path / "bad.yaml", TODAY)
    # the missing victim recorder, not the passed review date (a warning)
    assert [f.rule for f in info.value.findings] == ["P6.consent_recorder"]
