"""The OpenAPI document says what an agency developer needs and could not guess: how to
authenticate, what the JOSE request bodies are, and every problem code a response can carry."""

from __future__ import annotations

from typing import Any

import pytest_asyncio

from broker.errors import MaspError
from tests.security.conftest import Api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def document(shared_api: Api) -> dict[str, Any]:
    doc: dict[str, Any] = (await shared_api.http.get("/openapi.json")).json()
    return doc


def _codes(cls: type[MaspError]) -> set[str]:
    return {cls.code}.union(*(_codes(sub) for sub in cls.__subclasses__()))


async def test_every_authenticated_route_names_its_bearer_credential(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert set(schemes) == {"agencyAssertion", "roleToken"}
    assert "aud 'broker'" in schemes["agencyAssertion"]["description"]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            if "401" in op["responses"]:
                assert op.get("security"), f"{method.upper()} {path} declares 401 but no credential"
            if "agency" in op.get("tags", ()) and "401" in op["responses"]:
                assert op["security"] == [{"agencyAssertion": []}], f"{method.upper()} {path}"
    assert "security" not in document["paths"]["/.well-known/jwks.json"]["get"]


async def test_jose_bodies_are_declared(document: dict[str, Any]) -> None:
    for path in ("/v1/messages", "/v1/mailbox/{delivery_id}/ack"):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True and list(body["content"]) == ["application/jose"]
        assert "docs/spec/" in body["description"]


async def test_every_problem_code_is_listed(document: dict[str, Any]) -> None:
    code = document["components"]["schemas"]["Problem"]["properties"]["code"]
    listed = set(code["anyOf"][0]["enum"])
    assert _codes(MaspError) - {"error"} <= listed
    assert {"invalid-request", "purpose-not-agreed", "delivery-mismatch", "conflict"} <= listed
