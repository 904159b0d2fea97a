"""The catalogue as a whole: every type present, every field classified, names coherent."""

from __future__ import annotations

from typing import get_args

import pytest

import schemas
from schemas import (
    MESSAGE_TYPES,
    NEVER_TO_NHS,
    SPECIAL_CATEGORY,
    DataClass,
    SchemaInvalid,
    body_model,
    data_classes,
)
from schemas._types import MaspType
from schemas.correction_notice import CORRECTABLE, CorrectableType, CorrectionNoticeBase
from schemas.envelope import ENVELOPE_CLAIMS

#: docs/domain.md section 2, in order.
CATALOGUE = [
    "case_referral",
    "intervention_referral",
    "intervention_status_update",
    "risk_concern_alert",
    "cj_status_update",
    "offender_management_update",
    "victim_advocacy_referral",
    "victim_safety_update",
    "risk_level_change",
    "consent_change",
    "correction_notice",
    "case_closure",
]

#: Fields that locate the victim or describe how she is kept safe: never to nhs.
VICTIM_WHEREABOUTS = {
    "victim_address",
    "victim_phone",
    "victim_email",
    "victim_workplace",
    "victim_safe_contact_times",
    "victim_preferred_contact_method",
    "exclusion_zones",
    "safety_measures",
    "safety_plan_review_date",
}


def test_the_catalogue_is_complete_and_in_order() -> None:
    assert list(MESSAGE_TYPES) == CATALOGUE
    assert list(get_args(MaspType)) == CATALOGUE
    assert schemas.SCHEMA_VERSION == "1"


def test_each_model_names_its_own_type() -> None:
    for masp_type, model in MESSAGE_TYPES.items():
        assert model.masp_type == masp_type
        assert body_model(masp_type) is model


@pytest.mark.parametrize("masp_type", CATALOGUE)
def test_data_classes_are_total(masp_type: str) -> None:
    classes = data_classes(masp_type)
    assert set(classes) == set(MESSAGE_TYPES[masp_type].model_fields)
    assert all(isinstance(c, DataClass) for c in classes.values())


def test_unknown_message_type_is_refused() -> None:
    with pytest.raises(SchemaInvalid) as caught:
        body_model("stalker_home_address_for_nhs")
    assert caught.value.fields == ("masp_type",)
    assert "stalker_home_address_for_nhs" not in str(caught.value)
    with pytest.raises(SchemaInvalid):
        data_classes("")
    with pytest.raises(SchemaInvalid):
        schemas.validate_body("no_such_type", "1", {})


def test_schema_invalid_is_a_value_error() -> None:
    assert issubclass(SchemaInvalid, ValueError)


def test_a_field_name_means_the_same_class_in_every_type() -> None:
    seen: dict[str, tuple[str, DataClass]] = {}
    for masp_type, model in MESSAGE_TYPES.items():
        for name, cls in model.data_classes().items():
            first = seen.setdefault(name, (masp_type, cls))
            assert first[1] is cls, f"{name}: {first[0]} says {first[1]}, {masp_type} says {cls}"


def test_no_body_field_shadows_an_envelope_claim() -> None:
    for model in MESSAGE_TYPES.values():
        assert not set(model.model_fields) & ENVELOPE_CLAIMS
        assert not any(name.startswith("_") for name in model.model_fields)


def test_victim_whereabouts_are_always_in_a_never_to_nhs_class() -> None:
    found = 0
    for model in MESSAGE_TYPES.values():
        for name, cls in model.data_classes().items():
            if name in VICTIM_WHEREABOUTS:
                found += 1
                assert cls in NEVER_TO_NHS, f"{model.__name__}.{name} is {cls}"
    assert found >= len(VICTIM_WHEREABOUTS)


def test_intervention_status_update_has_no_clinical_detail() -> None:
    classes = set(data_classes("intervention_status_update").values())
    assert classes == {DataClass.INTERVENTION_STATUS}
    assert not classes & SPECIAL_CATEGORY


def test_clinical_detail_only_travels_in_a_risk_concern_alert() -> None:
    carriers = {
        masp_type
        for masp_type, model in MESSAGE_TYPES.items()
        if masp_type != "correction_notice"
        and DataClass.CLINICAL_DETAIL in model.data_classes().values()
    }
    assert carriers == {"risk_concern_alert"}


@pytest.mark.parametrize(
    ("masp_type", "expected"),
    [
        (
            "case_referral",
            {
                DataClass.PERPETRATOR_IDENTITY,
                DataClass.PERPETRATOR_ADDRESS,
                DataClass.VICTIM_IDENTITY,
                DataClass.VICTIM_LOCATION,
                DataClass.OFFENCE,
                DataClass.CJ_STATUS,
                DataClass.ORDERS,
                DataClass.RISK_SCREENING,
                DataClass.HEALTH_FLAGS,
                DataClass.CHILDREN,
                DataClass.REFERRER,
            },
        ),
        (
            "cj_status_update",
            {DataClass.CJ_STATUS, DataClass.ORDERS, DataClass.OFFENCE, DataClass.VICTIM_LOCATION},
        ),
        ("intervention_status_update", {DataClass.INTERVENTION_STATUS}),
        ("risk_level_change", {DataClass.RISK_SCREENING}),
        ("case_closure", {DataClass.CJ_STATUS}),
        ("consent_change", {DataClass.VICTIM_VIEWS, DataClass.INTERVENTION_STATUS}),
    ],
)
def test_types_carry_the_catalogue_classes(masp_type: str, expected: set[DataClass]) -> None:
    assert set(data_classes(masp_type).values()) == expected


def test_every_type_but_correction_notice_is_correctable() -> None:
    correctable = {model.masp_type for model in CORRECTABLE}
    assert correctable == set(CATALOGUE) - {"correction_notice"}
    assert set(get_args(CorrectableType)) == correctable
    assert issubclass(MESSAGE_TYPES["correction_notice"], CorrectionNoticeBase)
