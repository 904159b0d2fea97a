"""correction_notice: corrected values travel under their own names and data classes."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import MESSAGE_TYPES, DataClass, SchemaInvalid, data_classes, validate_body
from schemas.correction_notice import CORRECTABLE, CorrectionNoticeBase

from .conftest import load_example

META = set(CorrectionNoticeBase.model_fields)


def _notice(**fields: Any) -> dict[str, Any]:
    return {
        "corrects_message_id": "01966c3e-7a21-7c4b-9f3e-2b8d5e1a0c47",
        "corrects_masp_type": "case_referral",
        "correction_reason": "factual_error",
        **fields,
    }


def _refusal(claims: dict[str, Any]) -> SchemaInvalid:
    with pytest.raises(SchemaInvalid) as caught:
        validate_body("correction_notice", "1", claims)
    return caught.value


def test_every_catalogue_field_can_be_corrected_with_its_own_class() -> None:
    classes = data_classes("correction_notice")
    for model in CORRECTABLE:
        for name, cls in model.data_classes().items():
            assert classes[name] is cls
    assert set(classes) - META == {n for m in CORRECTABLE for n in m.model_fields}
    assert {classes[n] for n in META} == {DataClass.MESSAGE_REFERENCE}


def test_corrected_values_keep_their_constraints() -> None:
    address = load_example("case_referral")["victim_address"]
    exc = _refusal(_notice(victim_address={**address, "postcode": "not a postcode"}))
    assert exc.fields == ("victim_address.postcode",)
    exc = _refusal(_notice(sdash_yes_count=12))
    assert exc.errors == (("sdash_yes_count", "less_than_equal"),)


def test_a_corrected_field_must_belong_to_the_corrected_type() -> None:
    exc = _refusal(_notice(sessions_attended=3))
    assert exc.errors == (("sessions_attended", "field_not_in_corrected_type"),)


def test_withdrawn_fields_must_belong_to_the_corrected_type() -> None:
    exc = _refusal(_notice(withdrawn_fields=["zebedee_quillfeather"]))
    assert exc.errors == (("withdrawn_fields", "withdrawn_field_invalid"),)
    assert "zebedee" not in str(exc)


def test_a_field_is_corrected_or_withdrawn_not_both() -> None:
    exc = _refusal(_notice(victim_phone="07700 900999", withdrawn_fields=["victim_phone"]))
    assert exc.fields == ("withdrawn_fields",)


def test_a_notice_corrects_something() -> None:
    assert _refusal(_notice()).errors[0][1] == "nothing_to_correct"


def test_a_notice_cannot_correct_a_notice() -> None:
    exc = _refusal(_notice(corrects_masp_type="correction_notice", victim_phone="07700 900999"))
    assert "corrects_masp_type" in exc.fields


def test_withdrawal_alone_is_a_correction() -> None:
    body = validate_body(
        "correction_notice",
        "1",
        _notice(
            correction_reason="wrong_subject", withdrawn_fields=["perpetrator_name", "victim_name"]
        ),
    )
    assert body.present_fields() == META


def test_notice_schema_lists_each_field_once() -> None:
    props = MESSAGE_TYPES["correction_notice"].model_json_schema()["properties"]
    assert set(props) == set(data_classes("correction_notice"))
