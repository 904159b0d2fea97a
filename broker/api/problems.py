"""RFC 9457 problem documents for every error the HTTP edge can return."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from broker.errors import PROBLEM_BASE, MaspError

PROBLEM_JSON = "application/problem+json"


def problem_response(status: int, code: str, title: str, detail: str, instance: str,
                     **extra: object) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": title, "status": status, "detail": detail,
            "code": code, "instance": instance, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = problem_openapi(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(MaspError)
    async def _masp(request: Request, exc: MaspError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429 and "retry_after" in exc.extensions:
            headers = {"Retry-After": str(exc.extensions["retry_after"])}
        resp = JSONResponse(exc.problem(request.url.path), status_code=exc.status,
                            media_type=PROBLEM_JSON, headers=headers)
        return resp

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # name the failing parameters only: pydantic's messages quote the input
        fields = [".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()]
        return problem_response(422, "invalid-request", "Request parameters are invalid",
                                f"invalid: {', '.join(fields)}", request.url.path, fields=fields)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return problem_response(exc.status_code, f"http-{exc.status_code}", str(exc.detail),
                                str(exc.detail), request.url.path)


# --- OpenAPI: every error a route can return is declared as a problem document ----------

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["type", "title", "status"], "additionalProperties": True,
    "description": "RFC 9457 problem details; `code` is the last segment of `type`.",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"},
                   "instance": {"type": "string"}, "code": {"type": "string"}},
}
_REASONS = {
    400: "malformed request or message", 401: "no valid credentials", 403: "not allowed for this caller",
    404: "not found, or not this caller's", 409: "conflicts with the current state",
    413: "too large", 422: "invalid parameters or body", 429: "rate limit exceeded",
}


def declare(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: the problem statuses it can return. Their content
    (``application/problem+json``) is filled in by ``problem_openapi``."""
    return {status: {"description": _REASONS.get(status, "refused")} for status in statuses}


#: Every route that calls ``authenticate``.
AUTHENTICATED = declare(401, 403)


#: Problem codes the HTTP layer itself gives beside every ``MaspError`` subclass's ``code``
#: (and ``http-<status>`` for what Starlette refuses before a route runs).
HTTP_CODES = ("invalid-request",)


def problem_codes() -> list[str]:
    """Every ``code`` a problem document from this API can carry (docs/spec/problems.md)."""
    codes: set[str] = set(HTTP_CODES)
    pending: list[type[MaspError]] = [MaspError]
    while pending:
        cls = pending.pop()
        codes.add(cls.code)
        pending.extend(cls.__subclasses__())
    codes.discard(MaspError.code)
    return sorted(codes)


#: Bearer credentials (docs/spec/authentication.md): an agency's single-use assertion, or a
#: person's role token (the console's OIDC sign-in gives the same roles).
SECURITY_SCHEMES: dict[str, Any] = {
    "agencyAssertion": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWS (header typ JWT, alg Ed25519 or EdDSA, kid = the agency's registered "
                       "signing key) with claims iss = sub = the agency, aud 'broker', a fresh jti "
                       "(single use), iat and exp at most 300 s later. One per request."},
    "roleToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A person's role token (typ masp-user+jwt, role ig_officer, ops or admin), "
                       "from `masp token` in development or OIDC sign-in in production."},
}
JOSE_BODY = {"application/jose": {"schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.~-]+$"}}}


def jose_body(description: str) -> dict[str, Any]:
    """``openapi_extra`` for a route whose body is a compact JOSE object."""
    return {"requestBody": {"required": True, "description": description, "content": JOSE_BODY}}


def problem_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every declared 4xx response the problem document as its only content, replacing
    FastAPI's default 422 (``application/json`` HTTPValidationError, which is never sent);
    name every problem code; and say which bearer credential each authenticated route takes."""
    problem_schema = {**PROBLEM_SCHEMA, "properties": {
        **PROBLEM_SCHEMA["properties"],
        "code": {"type": "string", "anyOf": [{"enum": problem_codes()}, {"pattern": "^http-[0-9]{3}$"}],
                 "description": "the last segment of `type`: one of this API's problem codes, or "
                                "http-<status> from the HTTP layer (docs/spec/problems.md)"}}}
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = problem_schema
    components["securitySchemes"] = SECURITY_SCHEMES
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if "401" in operation.get("responses", {}):
                agency = "agency" in operation.get("tags", ())
                operation["security"] = ([{"agencyAssertion": []}] if agency
                                         else [{"roleToken": []}, {"agencyAssertion": []}])
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if 400 <= int(status) < 500:
                    response["content"] = problem
    return schema
