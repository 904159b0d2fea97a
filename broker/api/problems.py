"""RFC 9457 problem documents for every error the HTTP edge can return."""

from __future__ import annotations

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
    @app.exception_handler(MaspError)
    async def _masp(request: Request, exc: MaspError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
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
