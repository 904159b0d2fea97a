"""The adapter's local HTTP endpoint: an agency system posts native records here, and logs
submit checkpoints to the agency's witness.

``POST /records?name=FILE`` with the file's bytes as the body (any content type): 202 and
what was sent, or an RFC 9457 problem document: 422 ``native-record-invalid`` listing each
record and field (nothing of the file was sent), 502 ``submission-refused`` when the broker
refused a message. Bound to 127.0.0.1 by default: the agency system runs beside it.

With a ``Witness`` (``masp adapter run`` always passes the agency's), the C2SP tlog-witness
routes, with the spec's status codes and plain-text bodies (not problem documents):
``POST /add-checkpoint`` (the body is bounded: 413 beyond ``MAX_REQUEST_BYTES``) and
``GET /{origin hash}/checkpoint`` for monitors. A log that pushes checkpoints must reach the
endpoint: bind it (``--host``) where the broker can.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from adapters.host import AgencyAdapter, SubmissionRefused
from adapters.native import NativeRecordInvalid
from broker.audit.tlog_witness import MAX_REQUEST_BYTES, TEXT_MEDIA, Witness, WitnessRefusal
from broker.errors import MaspError

PROBLEM = "application/problem+json"

log = structlog.get_logger("masp.witness")


def create_endpoint(adapter: AgencyAdapter, max_bytes: int = 4 * 1024 * 1024,
                    witness: Witness | None = None) -> FastAPI:
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

    if witness is not None:
        _witness_routes(app, witness)
    return app


def _witness_routes(app: FastAPI, witness: Witness) -> None:
    """``POST /add-checkpoint`` and ``GET /{origin_hash}/checkpoint`` (c2sp.org/tlog-witness)."""

    @app.post("/add-checkpoint", response_class=PlainTextResponse)
    async def add_checkpoint(request: Request) -> Response:
        body = await _bounded_body(request, MAX_REQUEST_BYTES)
        if body is None:
            return _text(413, "request body too large\n")
        try:  # a thread: the record's lock and fsync block
            answer = await asyncio.to_thread(witness.add_checkpoint, body)
        except WitnessRefusal as exc:
            log.warning("witness_refused", witness=witness.name, status=exc.status, code=exc.code,
                        latest_size=exc.latest_size)
            return _text(exc.status, exc.body, exc.content_type)
        except MaspError as exc:  # a record that does not parse, keys that cannot be read
            log.error("witness_failed", witness=witness.name, code=exc.code)
            return _text(500, "the witness cannot check checkpoints now\n")
        log.info("witness_cosigned", witness=witness.name, via="add-checkpoint")
        return _text(200, answer)

    @app.get("/{origin_hash}/checkpoint", response_class=PlainTextResponse)
    async def monitored(origin_hash: str) -> Response:
        try:
            note = await asyncio.to_thread(witness.monitored, origin_hash)
        except WitnessRefusal as exc:
            return _text(exc.status, exc.body, exc.content_type)
        except MaspError as exc:
            log.error("witness_failed", witness=witness.name, code=exc.code)
            return _text(500, "the witness cannot read its record now\n")
        return _text(200, note)


async def _bounded_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it exceeds ``limit`` bytes (not read any further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, body: str, content_type: str = TEXT_MEDIA) -> Response:
    # the header is set as given: Starlette would add "; charset=utf-8" to a media type, and
    # the spec's 409 is exactly ``text/x.tlog.size``
    return Response(body.encode("utf-8"), status_code=status, headers={"content-type": content_type})


def _problem(status: int, code: str, title: str, detail: str) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://masp.example/problems/{code}", "title": title,
                            "status": status, "detail": detail, "code": code}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)
