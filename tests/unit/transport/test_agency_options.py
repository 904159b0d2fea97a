"""MASP_DELIVERY_MODES and MASP_JWS_ALG_NAMES: what the operator writes, and what stops the broker."""

from __future__ import annotations

import pytest

from broker.settings import Settings


def test_each_agency_gets_what_it_registered_and_the_rest_the_defaults() -> None:
    settings = Settings(delivery_modes=" advocacy = mailbox ,nhs=amqp", jws_alg_names="probation=EdDSA")
    options = settings.agency_options
    assert [options.delivery_mode(a) for a in ("advocacy", "nhs", "police")] == ["mailbox", "amqp", "amqp"]
    assert [options.alg_for(a) for a in ("probation", "police")] == ["EdDSA", "Ed25519"]
    assert options.mailbox_agencies() == frozenset({"advocacy"})


@pytest.mark.parametrize(("field", "value", "why"), [
    ("delivery_modes", "advocacy=pigeon", "amqp"),          # not a mode
    ("delivery_modes", "advocacy=MAILBOX", "amqp"),         # codes are exact
    ("delivery_modes", "broker=mailbox", "not agencies"),   # the broker receives nothing
    ("delivery_modes", "mars=mailbox", "not agencies"),
    ("delivery_modes", "advocacy=mailbox,advocacy=amqp", "named twice"),
    ("delivery_modes", "advocacy", "expected agency="),
    ("jws_alg_names", "probation=none", "Ed25519"),         # no way to name an unsigned token
    ("jws_alg_names", "probation=ES256", "Ed25519"),
    ("jws_alg_names", "probation=eddsa", "Ed25519"),
    ("jws_alg_names", "=EdDSA", "expected agency="),
])
def test_a_registration_the_broker_cannot_honour_stops_it_at_start(field: str, value: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Settings(**{field: value})
