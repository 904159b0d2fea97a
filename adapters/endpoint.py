"""The adapter's local HTTP endpoint: an agency system posts native records here.

``POST /records?name=FILE`` with the file's bytes as the body (any content type): 202 and
what was sent, or an RFC 9457 problem document: 422 ``native-record-invalid`` listing each
record and field (nothing of the file was sent), 502 ``submission-refused`` when the broker
refused a message. Bound to 127.0.0.1 by default: the agency system runs beside it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from adapters.host import AgencyAdapter, SubmissionRefused
from adapters.native import NativeRecordInvalid
from broker.errors import MaspError

PROBLEM = "application/problem+json"


def create_endpoint(adapter: AgencyAdapter, max_bytes: int = 4 * 1024 * 1024) -> FastAPI:
    app = FastAPI(title=f"MASP {adapter.agency} adapter", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "agency": adapter.agency}

    @app.post("/records", status_code=202)
    async def records(request: Request, name: str = Query("posted", max_length=200)) -> JSONResponse:
        data = await request.body()
        if len(data) > max_bytes:
            return _problem(413, "too-large", "Native file too large", f"more than {max_bytes} bytes")
        try:
            sent = await adapter.ingest(name, data)
        except NativeRecordInvalid as exc:
            return JSONResponse(exc.problem(instance=name), status_code=422, media_type=PROBLEM)
        except SubmissionRefused as exc:
            return JSONResponse({**exc.problem(instance=name), "status": 502}, status_code=502,
                                media_type=PROBLEM)
        except MaspError as exc:
            return JSONResponse(exc.problem(instance=name), status_code=exc.status, media_type=PROBLEM)
        return JSONResponse({"source": name, "sent": [s.as_dict() for s in sent]}, status_code=202)

    return app


def _problem(status: int, code: str, title: str, detail: str) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://masp.example/problems/{code}", "title": title,
                            "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)
