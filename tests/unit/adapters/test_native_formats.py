"""Each agency's native format: its fixtures read, bad records refused by record and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.formats import native_format
from adapters.native import NativeRecordInvalid, prepare
from adapters.nhs.nhs_number import is_valid_nhs_number
from schemas import NEVER_TO_NHS, data_classes

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "broker" / "demo" / "native"
ASSETS = REPO / "tests" / "assets"

VALID = [
    ("police", DEMO / "police" / "1_referral.json", ["case_referral"]),
    ("police", DEMO / "police" / "2_advocacy_referral.json", ["consent_change", "victim_advocacy_referral"]),
    ("police", DEMO / "police" / "3_charge.json", ["cj_status_update"]),
    ("police", ASSETS / "police" / "spo_granted.json", ["cj_status_update"]),
    ("probation", DEMO / "probation" / "3b_referral_after_charge.csv", ["intervention_referral"]),
    ("probation", ASSETS / "probation" / "release_and_recall.csv",
     ["offender_management_update", "offender_management_update"]),
    ("nhs", DEMO / "nhs" / "4a_attendance.json", ["intervention_status_update"]),
    ("nhs", DEMO / "nhs" / "4b_risk_disclosure.json", ["risk_concern_alert"]),
    ("advocacy", DEMO / "advocacy" / "5_safety_review.json", ["victim_safety_update"]),
    ("advocacy", ASSETS / "advocacy" / "consent_and_views.json", ["consent_change", "victim_safety_update"]),
]

INVALID = [
    ("police", ASSETS / "police" / "invalid_export.json", {
        ("invalid_export.json", "occurrence.suspect.pnc_id", "bad_format"),
        ("event EV-118734-01", "occurrence.risk.sdash.answers", "not_eleven_answers"),
        ("event EV-118734-01", "occurrence.victim.safe_contact[0].days", "unknown_code"),
        ("event EV-118734-02", "date", "missing"),
        ("event EV-118734-03", "type", "unknown_event_type")}),
    ("probation", ASSETS / "probation" / "invalid_extract.csv", {
        ("row 3 (CRN K20411)", "crn", "bad_format"),
        ("row 3 (CRN K20411)", "rosh_level", "unknown_code"),
        ("row 4 (CRN X482913)", "consent_to_referral", "perpetrator_has_not_consented"),
        ("row 4 (CRN X482913)", "dob", "not_a_date")}),
    ("nhs", ASSETS / "nhs" / "invalid_nhs_number.json", {
        ("Patient/pat-plsi-0147", "identifier[nhs-number]", "fails_modulus_11_check"),
        ("Communication/comm-risk-0147-1", "payload.contentString", "missing")}),
    ("nhs", ASSETS / "nhs" / "invalid_fhir_date.json", {
        ("Bundle", "entry.2.resource.lastModified", "value_error")}),
    ("advocacy", ASSETS / "advocacy" / "invalid_safety_review.json", {
        ("update SAS-2026-0419-U08", "safety_plan.measures[0].code", "unknown_code"),
        ("update SAS-2026-0419-U08", "incidents[0].reported_to_police", "not_yes_or_no"),
        ("update SAS-2026-0419-U08", "new_contact_details.address.postcode", "bad_format")}),
]


@pytest.mark.parametrize(("agency", "path", "types"), VALID, ids=lambda v: getattr(v, "name", None))
def test_fixture_reads_as_canonical_messages(agency: str, path: Path, types: list[str]) -> None:
    out = prepare(native_format(agency), path.name, path.read_bytes())
    assert [o.masp_type for o in out] == types
    for o in out:
        assert o.case_id.startswith("HIOW-MASP-")
        assert any(s["category"] == "suspect" for s in o.subjects)


@pytest.mark.parametrize(("agency", "path", "expected"), INVALID, ids=lambda v: getattr(v, "name", None))
def test_invalid_file_is_refused_naming_record_and_field(agency: str, path: Path,
                                                         expected: set[tuple[str, str, str]]) -> None:
    with pytest.raises(NativeRecordInvalid) as caught:
        prepare(native_format(agency), path.name, path.read_bytes())
    got = {(p.record, p.field, p.reason) for p in caught.value.problems}
    assert got == expected
    report = caught.value.report()
    assert "nothing of this file was sent" in report
    # the report names fields, never values
    for value in ("Marsh", "Hutton", "31/02/1986", "PO99", "9434765918", "K20411 "):
        assert value not in report.replace("CRN K20411)", "")


def test_schema_problems_are_reported_with_the_native_field() -> None:
    path = DEMO / "probation" / "3b_referral_after_charge.csv"
    bad = path.read_text().replace(",H,19/11/2026,H,9,", ",H,19/11/2026,H,12,")
    assert bad != path.read_text()
    with pytest.raises(NativeRecordInvalid) as caught:
        prepare(native_format("probation"), "x.csv", bad.encode())
    assert [(p.record, p.field) for p in caught.value.problems] == [("row 2 (CRN X482913)", "sdash_yes")]


def test_canonical_schema_errors_name_the_native_source() -> None:
    path = DEMO / "advocacy" / "5_safety_review.json"
    bad = path.read_text().replace('"phone": "07700 900577"', '"phone": "call me"')
    with pytest.raises(NativeRecordInvalid) as caught:
        prepare(native_format("advocacy"), "x.json", bad.encode())
    assert [p.field for p in caught.value.problems] == ["new_contact_details.phone (victim_phone)"]


@pytest.mark.parametrize(("number", "ok"), [
    ("9434765919", True), ("943 476 5919", True), ("4010232137", True), ("9434765918", False),
    ("943476591", False), ("94347659190", False), ("0000000001", False), ("abcdefghij", False)])
def test_nhs_number_modulus_11(number: str, ok: bool) -> None:
    assert is_valid_nhs_number(number) is ok


def test_nhs_number_with_check_value_ten_is_never_valid() -> None:
    # 1000000010: weights give 10*1 + 2*1 = 12 -> 11 - 1 = 10: no such number is issued
    assert not any(is_valid_nhs_number(f"100000001{d}") for d in range(10))


def test_clinical_note_leaves_nhs_only_with_an_override() -> None:
    fmt = native_format("nhs")
    with_override = prepare(fmt, "a", (DEMO / "nhs" / "4b_risk_disclosure.json").read_bytes())[0]
    assert "clinical_note" in with_override.body and with_override.override is not None
    assert with_override.override["authoriser"] == {"id": "cg-0042", "role": "caldicott_guardian"}
    without = prepare(fmt, "b", (ASSETS / "nhs" / "risk_disclosure_without_override.json").read_bytes())[0]
    assert "clinical_note" not in without.body and without.override is None
    assert without.body["disclosure_summary"] == with_override.body["disclosure_summary"]


def test_status_update_carries_attendance_and_nothing_clinical() -> None:
    out = prepare(native_format("nhs"), "a", (DEMO / "nhs" / "4a_attendance.json").read_bytes())[0]
    assert out.body == {"status_date": "2026-12-16", "intervention_stage": "in_treatment",
                        "referral_decision": "accepted", "sessions_offered": 4, "sessions_attended": 3,
                        "sessions_missed": 1, "engagement": "partial", "next_session_date": "2026-12-23"}
    assert "grievance" not in str(out.body)  # the Task's note stays in the record system


def test_police_referral_keeps_victim_location_apart_from_what_nhs_may_see() -> None:
    out = prepare(native_format("police"), "a", (DEMO / "police" / "1_referral.json").read_bytes())[0]
    classes = data_classes("case_referral")
    located = {f for f in out.body if classes[f] in NEVER_TO_NHS}
    assert {"victim_address", "victim_phone", "victim_safe_contact_times"} <= located
    assert out.body["sdash_yes_count"] == 9 and out.body["sash_concern_level"] == "high"
