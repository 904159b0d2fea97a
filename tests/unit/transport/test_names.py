"""Namespaced exchange and queue names: the namespace is always set off by a dot."""

from __future__ import annotations

import pytest

from broker.errors import ConfigurationError
from broker.settings import Settings
from broker.transport.topology import Names


@pytest.mark.parametrize("namespace", ["demo1", "demo1."])
def test_a_namespace_is_set_off_by_one_dot(namespace: str) -> None:
    names = Names(namespace)
    assert names.namespace == "demo1."
    assert (names.ingress, names.ingress_queue("police"), names.inbox("nhs"), names.acks, names.events) == (
        "demo1.masp.ingress", "demo1.masp.ingress.police", "demo1.inbox.nhs", "demo1.masp.acks",
        "demo1.masp.events")


def test_no_namespace_gives_bare_names() -> None:
    assert (Names().ingress, Names("").inbox("nhs")) == ("masp.ingress", "inbox.nhs")


@pytest.mark.parametrize("bad", ["a b", "demo..", ".demo", "demo.x", "d" * 64, "démo", "a/b"])
def test_a_namespace_that_could_blur_into_a_name_is_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        Names(bad)
    with pytest.raises(ValueError, match="MASP_NAMESPACE"):
        Settings(namespace=bad)
