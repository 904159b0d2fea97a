"""The AMQP sender is the agency its RabbitMQ user maps to (``MASP_AMQP_AGENCY_USERS``)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker.errors import MisroutedSubmission, Unauthorized
from broker.settings import Settings
from broker.transport.identity import AmqpIdentities


def test_users_are_the_agencies_names_unless_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(amqp_url="amqp://masp-broker:pw@rabbit/masp").amqp_users == {
        "police": "police", "probation": "probation", "nhs": "nhs", "advocacy": "advocacy"}
    monkeypatch.setenv("MASP_AMQP_AGENCY_USERS", " police=hiow-police , nhs=hiow-nhs")
    settings = Settings(amqp_url="amqp://masp-broker:pw@rabbit/masp")
    assert settings.amqp_agency_users == {"police": "hiow-police", "nhs": "hiow-nhs"}
    assert settings.amqp_users == {"hiow-police": "police", "probation": "probation",
                                   "hiow-nhs": "nhs", "advocacy": "advocacy"}
    assert settings.amqp_user == "masp-broker"
    # the plain "police" user is no agency's once police has a user of its own
    ids = AmqpIdentities.from_settings(settings)
    with pytest.raises(Unauthorized):
        ids.agency_of("police", "police")
    assert ids.agency_of("hiow-police", "police") == "police"
    # and the settings survive the JSON hop to a worker process
    assert Settings.model_validate_json(settings.model_dump_json()).amqp_users == settings.amqp_users


@pytest.mark.parametrize(("value", "problem"), [
    ("police", "expected agency=user"), ("police=a,police=b", "named twice"),
    ("fire=brigade", "not agencies: fire"), ("police=nhs", "share one RabbitMQ user"),
    ("police=x,probation=x", "share one RabbitMQ user")])
def test_a_bad_mapping_stops_start_up(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    monkeypatch.setenv("MASP_AMQP_AGENCY_USERS", value)
    with pytest.raises(ValidationError, match=problem):
        Settings()


def test_agency_of() -> None:
    ids = AmqpIdentities({"t1-police": "police", "t1-nhs": "nhs"}, broker_user="masp-broker")
    assert ids.agency_of("t1-police", "police") == "police"
    for missing in (None, ""):
        with pytest.raises(Unauthorized, match="user_id"):
            ids.agency_of(missing, "police")
    with pytest.raises(Unauthorized, match="not an agency"):
        ids.agency_of("guest", "police")
    with pytest.raises(MisroutedSubmission) as misrouted:
        ids.agency_of("t1-nhs", "police")
    assert misrouted.value.agency == "nhs" and misrouted.value.code == "forbidden"
    # the broker's own user hands over for the queue's agency (dead-letter replay)
    assert ids.agency_of("masp-broker", "probation") == "probation"
