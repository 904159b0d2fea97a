"""Schemathesis against ``/openapi.json``: generated requests to every operation, on a real
store, authenticated as a caller the route admits (from the authorisation matrix), so the
handlers run rather than stopping at 401. No response may be a server error, and each must
be one the document declares: status code, content type and body schema.

Bounded: a few examples per operation and generation mode (``MASP_FUZZ_EXAMPLES``, default
6), the whole run well under a minute. Requests go through httpx over ASGI on this test's
own event loop, the loop the store's connections belong to.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys
from tests.security.conftest import Api, api_settings, open_api
from tests.security.test_authorisation_matrix import ACCESS, PERSONS, make_fixture

EXAMPLES = int(os.environ.get("MASP_FUZZ_EXAMPLES", "6"))
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
#: Compact JOSE bodies (submissions, acknowledgements): dot-separated segments, some of them
#: well-formed base64url, some not, some of the wrong count. None is validly signed or
#: encrypted; the point is that none of them is a server error.
_SEGMENT = st.text(alphabet="ABCxyz019-_=+/ .", min_size=0, max_size=40)
schemathesis.openapi.media_type("application/jose", st.one_of(
    st.lists(_SEGMENT, min_size=1, max_size=6).map(lambda parts: ".".join(parts).encode()),
    st.binary(max_size=64)))


def _caller(route: str) -> str | None:
    """A caller the route admits (its owner where there is one), or None for public routes."""
    access = ACCESS[route].access
    if access.public:
        return None
    if access.owners:
        return sorted(access.owners)[0]
    roles = sorted(access.roles)
    return roles[0] if roles else sorted(access.agencies)[0]


def _auth(api: Api, caller: str | None) -> dict[str, str]:
    if caller is None:
        return {}
    return api.person(caller) if caller in PERSONS else api.agency(caller)


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Schemathesis serialises for ``requests``; the same request for httpx."""
    out = {k: kwargs[k] for k in ("method", "url", "headers", "params", "json") if k in kwargs}
    data = kwargs.get("data")
    if isinstance(data, (bytes, str)):
        out["content"] = data
    elif data is not None:
        out["data"] = data
    return out


def _route_key(method: str, path: str) -> str:
    return f"{method.upper()} {path.replace('{identifier}', '{identifier:path}')}"


def test_openapi_operations_fuzzed(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        service, app, plain = runner.run(open_api(api_settings(tmp_path)))
        runner.run(plain.aclose())
        # a server error is a response to report, not an exception to stop at
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://masp.test")
        keys = {a: AgencyKeys.load(service.settings.keys_dir, a) for a in (*AGENCIES, BROKER)}
        api = Api(service.settings, service, http, keys, app)
        try:
            fx = runner.run(make_fixture(api))
            schema = schemathesis.openapi.from_dict(runner.run(http.get("/openapi.json")).json())
            failures: list[str] = []
            operations = 0
            for result in schema.get_all_operations():
                operation = result.ok()
                route = _route_key(operation.method, operation.path)
                caller = _caller(route)
                operations += 1
                for mode in MODES:
                    failures += _fuzz(runner, api, operation, mode, caller, fx.params)
            assert operations == len([r for r in ACCESS if not r.startswith(("GET /docs", "GET /redoc",
                                                                               "GET /openapi"))])
            assert failures == [], "\n\n".join(failures)
        finally:
            runner.run(http.aclose())
            runner.run(service.close())


def _fuzz(runner: asyncio.Runner, api: Api, operation: Any, mode: schemathesis.GenerationMode,
          caller: str | None, params: dict[str, str]) -> list[str]:
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://masp.test", headers=_auth(api, caller))
        response = runner.run(api.http.request(**_httpx_kwargs(kwargs)))
        # /readyz answers 503 by design when a dependency is down (none is up here); declared so
        checks = CHECKS[1:] if operation.path == "/readyz" else CHECKS
        try:
            case.validate_response(response, checks=checks)
        except FailureGroup as exc:  # keep going: report every operation's failures at the end
            failures.append(f"{operation.method.upper()} {operation.path} [{mode.value}] as {caller}: {exc}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid: an operation without parameters or body
        assert mode == schemathesis.GenerationMode.NEGATIVE, f"{operation.path}: no positive cases"
    return failures
