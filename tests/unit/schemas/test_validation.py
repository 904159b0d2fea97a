"""Refusals: what a body may not be, and how the refusal is worded (never with values)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas import SchemaInvalid, validate_body

from .conftest import load_example

#: A distinctive made-up person; none of these strings may appear in an error.
SECRET_GIVEN = "Zebedee"
SECRET_FAMILY = "Quillfeather-Ormsby"
SECRET_STREET = "71 Xanthorrhoea Crescent"
SECRET_PHONE = "Zebedee's mum 07700"
SECRETS = (SECRET_GIVEN, SECRET_FAMILY, SECRET_STREET, "Xanthorrhoea", "Quillfeather", "07700")


def _refusal(masp_type: str, claims: dict[str, Any]) -> SchemaInvalid:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body(masp_type, "1", claims)
    return caught.value


def _assert_no_values(exc: SchemaInvalid) -> None:
    texts = [str(exc), repr(exc), *exc.fields, *(kind for _, kind in exc.errors)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {text!r}"
    # Nothing that holds the input is chained to the error either.
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_extra_top_level_field_is_refused() -> None:
    claims = load_example("case_referral")
    claims["victim_new_partner"] = "Ben"
    exc = _refusal("case_referral", claims)
    assert exc.errors == (("<unknown>", "extra_forbidden"),)


def test_extra_nested_field_is_refused() -> None:
    claims = load_example("case_referral")
    claims["victim_address"]["flat_entry_code"] = "4471"
    exc = _refusal("case_referral", claims)
    assert exc.fields == ("victim_address.<unknown>",)


def test_envelope_claims_are_not_body_fields() -> None:
    claims = load_example("cj_status_update")
    claims["case_id"] = "C-1"
    assert _refusal("cj_status_update", claims).errors[0][1] == "extra_forbidden"


def test_required_fields_are_named() -> None:
    exc = _refusal("case_referral", {})
    assert set(exc.fields) == {"perpetrator_name", "offence_codes", "cj_status", "referrer"}
    assert {kind for _, kind in exc.errors} == {"missing"}


def test_refusal_names_fields_and_types_but_never_values() -> None:
    claims = load_example("case_referral")
    claims["perpetrator_name"] = {"given": SECRET_GIVEN * 20, "family": SECRET_FAMILY}
    claims["victim_address"] = {
        "lines": [SECRET_STREET],
        "town": SECRET_FAMILY,
        "postcode": SECRET_STREET,
    }
    claims["victim_phone"] = SECRET_PHONE
    claims["victim_email"] = SECRET_FAMILY
    claims["cj_status"] = SECRET_FAMILY
    claims["children"] = [{"given_name": SECRET_GIVEN, "age": SECRET_FAMILY}]
    claims["sdash_yes_count"] = SECRET_STREET
    exc = _refusal("case_referral", claims)
    assert "perpetrator_name.given" in exc.fields
    assert "victim_address.postcode" in exc.fields
    assert "victim_phone" in exc.fields
    assert "children[0].age" in exc.fields
    assert ("cj_status", "enum") in exc.errors
    assert "victim_address.postcode (string_too_long)" in str(exc)
    _assert_no_values(exc)


def test_a_claim_named_after_a_person_is_masked() -> None:
    claims = load_example("case_referral")
    claims[f"{SECRET_GIVEN} {SECRET_FAMILY}"] = SECRET_STREET
    claims["victim_address"][SECRET_FAMILY.lower()] = 1
    exc = _refusal("case_referral", claims)
    assert set(exc.fields) == {"<unknown>", "victim_address.<unknown>"}
    _assert_no_values(exc)


def test_cross_field_refusals_name_their_fields() -> None:
    claims = load_example("case_referral")
    claims["sdash_yes_count"] = 4
    exc = _refusal("case_referral", claims)
    assert exc.errors == (
        ("sdash_yes_count", "sdash_count_mismatch"),
        ("sdash_answers", "sdash_count_mismatch"),
    )


def test_a_breached_order_needs_its_breach() -> None:
    claims = load_example("cj_status_update.spo_breach")
    del claims["orders"][0]["breach"]
    assert _refusal("cj_status_update", claims).errors == (
        ("orders[0].breach", "breach_details_missing"),
    )


def test_unsupported_schema_version_is_refused() -> None:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body("case_referral", "2", load_example("case_referral"))
    assert caught.value.fields == ("masp_schema",)


@pytest.mark.parametrize("claims", [[], "body", {1: "x"}, None])
def test_claims_must_be_a_mapping_of_names(claims: Any) -> None:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body("case_closure", "1", claims)
    assert caught.value.fields == ("<body>",)


def test_long_error_lists_are_capped() -> None:
    claims = load_example("case_referral")
    claims["perpetrator_aliases"] = [""] * 20
    claims["chronology"] = [{"on": "not a date", "summary": ""}] * 20
    exc = _refusal("case_referral", claims)
    assert len(exc.errors) == 60
    assert str(exc).endswith("and 40 more")


# --- rules of particular types ----------------------------------------------------------


def test_intervention_referral_needs_consent_and_acknowledged_limits() -> None:
    claims = load_example("intervention_referral")
    claims["perpetrator_consents_to_referral"] = False
    del claims["confidentiality_limits_acknowledged"]
    exc = _refusal("intervention_referral", claims)
    assert set(exc.fields) == {
        "perpetrator_consents_to_referral",
        "confidentiality_limits_acknowledged",
    }


def test_intervention_referral_under_investigation_is_left_to_the_policy() -> None:
    """P8 refuses it with an audited refusal; the schema must let it reach the policy."""
    claims = load_example("intervention_referral")
    claims["cj_status"] = "under_investigation"
    del claims["referrer"]["case_holder"]
    validate_body("intervention_referral", "1", claims)


def test_attendance_cannot_exceed_sessions_offered() -> None:
    claims = load_example("intervention_status_update")
    claims["sessions_attended"] = 4
    exc = _refusal("intervention_status_update", claims)
    assert exc.errors[0][1] == "sessions_exceed_offered"


def test_a_declined_referral_gives_a_coded_reason() -> None:
    claims = {"status_date": "2025-04-01", "intervention_stage": "declined"}
    claims["referral_decision"] = "declined"
    assert _refusal("intervention_status_update", claims).fields == ("decline_reason",)
    claims["decline_reason"] = "under_active_investigation"
    validate_body("intervention_status_update", "1", claims)


def test_consent_change_carries_exactly_one_decision() -> None:
    claims = load_example("consent_change")
    both = {**claims, "intervention_consent": copy.deepcopy(claims["victim_consent"])}
    assert _refusal("consent_change", both).errors[0][1] == "exactly_one_consent_decision"
    assert _refusal("consent_change", {}).errors[0][1] == "exactly_one_consent_decision"


def test_a_reason_is_only_given_for_a_withdrawal() -> None:
    claims = load_example("consent_change")
    claims["victim_consent"]["withdrawal_reason"] = "safety_concern"
    exc = _refusal("consent_change", claims)
    assert exc.fields == ("victim_consent.withdrawal_reason",)
    claims["victim_consent"]["status"] = "withdrawn"
    validate_body("consent_change", "1", claims)


def test_risk_level_change_must_change() -> None:
    claims = load_example("risk_level_change")
    claims["new_risk_level"] = claims["previous_risk_level"]
    assert _refusal("risk_level_change", claims).errors[0][1] == "level_unchanged"


def test_recall_needs_a_reason() -> None:
    claims = {"effective_date": "2026-01-05", "cj_status": "recalled"}
    assert _refusal("offender_management_update", claims).fields == ("recall_reason",)
    claims["recall_reason"] = "contact_with_victim"
    validate_body("offender_management_update", "1", claims)


def test_updates_must_say_something() -> None:
    assert _refusal("offender_management_update", {"effective_date": "2026-01-05"})
    assert _refusal("victim_safety_update", {"safety_plan_review_date": "2026-01-05"})


def test_advocacy_referral_needs_a_way_to_reach_the_victim() -> None:
    claims = load_example("victim_advocacy_referral")
    for name in ("victim_phone", "victim_email", "victim_address"):
        del claims[name]
    assert _refusal("victim_advocacy_referral", claims).errors[0][1] == "no_way_to_contact_victim"


def test_a_practitioner_must_be_reachable() -> None:
    claims = load_example("case_referral")
    del claims["referrer"]["phone"]
    del claims["referrer"]["email"]
    exc = _refusal("case_referral", claims)
    assert set(exc.fields) == {"referrer.phone", "referrer.email"}


def test_contact_windows_end_after_they_start() -> None:
    claims = load_example("case_referral")
    claims["victim_safe_contact_times"][0]["end"] = "11:00:00"
    exc = _refusal("case_referral", claims)
    assert "victim_safe_contact_times[0].end" in exc.fields


def test_alert_times_carry_an_offset() -> None:
    claims = load_example("risk_concern_alert")
    claims["disclosed_at"] = "2025-06-05T15:40:00"
    assert _refusal("risk_concern_alert", claims).errors == (("disclosed_at", "timezone_aware"),)


def test_a_mistyped_field_is_answered_with_the_name_it_resembles_never_its_own() -> None:
    """The sender learns which of its fields is wrong from our nearest name; the name it wrote
    (which could be anything, a person's name included) is still never repeated."""
    claims = load_example("case_referral")
    claims["victim_adress"] = {"lines": ["x"]}
    claims["victim_address"]["postcod"] = "x"
    claims[f"{SECRET_GIVEN} {SECRET_FAMILY}"] = 1
    exc = _refusal("case_referral", claims)
    assert set(exc.fields) == {"<unknown>", "victim_address.<unknown>"}
    assert "victim_address.<unknown> (extra_forbidden; did you mean postcode?)" in str(exc)
    assert "<unknown> (extra_forbidden; did you mean victim_address?)" in str(exc)
    assert "adress" not in str(exc) and "postcod " not in str(exc) and "postcod)" not in str(exc)
    _assert_no_values(exc)


@pytest.mark.parametrize(("start", "end"), [("09:30:00+01:00", "17:00:00"), ("09:30:00", "17:00:00Z")])
def test_a_contact_window_mixing_local_and_offset_times_is_refused_not_a_crash(start: str, end: str) -> None:
    """Python cannot order the two (a TypeError was a 500 over HTTP and a redelivery loop over AMQP)."""
    claims = load_example("case_referral")
    window = {"days": ["mon"], "start": start, "end": end, "methods": ["phone_call"]}
    claims["victim_safe_contact_times"] = [window]
    exc = _refusal("case_referral", claims)
    assert ("victim_safe_contact_times[0].start", "window_mixes_offsets") in exc.errors
    claims["victim_safe_contact_times"] = [{**window, "start": "09:30:00", "end": "17:00:00"}]
    validate_body("case_referral", "1", claims)


@pytest.mark.parametrize(("masp_type", "path", "value", "kind"), [
    ("case_referral", ("sdash_yes_count",), "3", "int_type"),
    ("case_referral", ("sdash_yes_count",), 3.0, "int_type"),
    ("intervention_referral", ("perpetrator_consents_to_referral",), 1, "literal_error"),
    ("intervention_referral", ("confidentiality_limits_acknowledged",), 1.0, "literal_error"),
    ("intervention_referral", ("perpetrator_consents_to_referral",), "true", "literal_error"),
])
def test_values_are_taken_as_the_json_schema_types_them_not_coerced(
        masp_type: str, path: tuple[str, ...], value: object, kind: str) -> None:
    """The broker forwards values as written: one it coerced ("3" read as 3) would reach a
    recipient that validates against the published schema as a value that schema refuses."""
    claims = load_example(masp_type)
    claims[path[0]] = value
    exc = _refusal(masp_type, claims)
    assert exc.errors == ((path[0], kind),)
