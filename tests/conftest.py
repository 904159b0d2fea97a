"""Shared fixtures: keys for every agency and the broker, and a registry of their public halves."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from broker.clock import FrozenClock
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys, KeyRegistry

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def agency_keys() -> dict[str, AgencyKeys]:
    return {a: AgencyKeys.generate(a, date(2026, 11, 1)) for a in (*AGENCIES, BROKER)}


@pytest.fixture(scope="session")
def registry(agency_keys: dict[str, AgencyKeys]) -> KeyRegistry:
    reg = KeyRegistry()
    for keys in agency_keys.values():
        reg.add(keys.sig)
        reg.add(keys.enc)
    return reg


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)
