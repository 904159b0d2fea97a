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


def problem_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Give every declared 4xx response the problem document as its only content, replacing
    FastAPI's default 422 (``application/json`` HTTPValidationError, which is never sent)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)
    problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if 400 <= int(status) < 500:
                    response["content"] = problem
    return schema
