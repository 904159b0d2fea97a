"""broker/logs.py: only allowed keys with well-shaped values leave a log event; exceptions and
library records never carry values."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import structlog
from opentelemetry.sdk.trace import TracerProvider

from broker import logs, telemetry
from broker.errors import SchemaInvalid

MID = "01937d9a-5b1c-7e2f-8a3b-4c5d6e7f8091"
PERSONAL = ("Claire", "Hutton", "Larkspur", "07700", "c.hutton", "19/4471023K")


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def _clean(buffer: io.StringIO) -> None:
    text = buffer.getvalue().lower()
    leaked = [p for p in PERSONAL if p.lower() in text]
    assert not leaked, f"{leaked} in {buffer.getvalue()}"


def test_unknown_keys_and_misshapen_values_are_withheld(log_output: io.StringIO) -> None:
    log = structlog.get_logger("t")
    log.info("submission_accepted", message_id=MID, agency="police", masp_type="case_referral",
             deliveries=2, victim_name="Claire Hutton")
    log.info("smuggling", agency="Claire Hutton", message_id="Claire Hutton", code="c.hutton@x.org",
             status="14 Larkspur Road", recipient="07700 900123", count="19/4471023K", rule=["Claire"])
    log.info("Claire Hutton phoned")  # an event must be a snake_case name, not a sentence
    first, second, third = _lines(log_output)
    assert first["message_id"] == MID and first["agency"] == "police" and first["deliveries"] == 2
    assert first["masp_type"] == "case_referral" and first["victim_name"] == logs.WITHHELD
    assert {k: second[k] for k in ("agency", "message_id", "code", "status", "recipient", "count",
                                   "rule")} == dict.fromkeys(
        ("agency", "message_id", "code", "status", "recipient", "count", "rule"), logs.WITHHELD)
    assert third["event"] == logs.WITHHELD
    _clean(log_output)


def test_exceptions_are_types_and_frames_without_messages_or_locals(log_output: io.StringIO) -> None:
    log = structlog.get_logger("t")

    def file_it(victim: str) -> None:
        raise KeyError(f"no record for {victim} at 14 Larkspur Road")

    try:
        try:
            file_it("Claire Hutton")
        except KeyError as exc:
            raise SchemaInvalid("victim_name: Claire Hutton is not a string") from exc
    except SchemaInvalid:
        log.exception("delivery_handling_failed", delivery_id=MID)
    log.error("handler_failed", exception="ValueError: Claire Hutton")  # not rendered by us
    rendered, forged = _lines(log_output)
    text = rendered["exception"]
    assert "KeyError" in text and "broker.errors.SchemaInvalid [schema-invalid]" in text
    assert "in file_it" in text and "test_logs.py" in text
    assert forged["exception"] == logs.WITHHELD
    _clean(log_output)


def test_library_records_keep_their_template_only(log_output: io.StringIO) -> None:
    logging.getLogger("sqlalchemy.engine").warning("[%s] %r", "cached", {"victim_name": "Claire Hutton"})
    logging.getLogger("aiormq.connection").debug("Received frame %r", b"07700 900123")
    logging.getLogger("uvicorn.error").error("Exception in ASGI application",
                                             exc_info=ValueError("Claire Hutton"))
    lines = _lines(log_output)
    assert [(x["logger"], x["event"], x["level"]) for x in lines] == [
        ("sqlalchemy.engine", "[%s] %r", "warning"), ("aiormq.connection", "Received frame %r", "debug"),
        ("uvicorn.error", "Exception in ASGI application", "error")]
    assert lines[2]["exception"].endswith("ValueError")
    _clean(log_output)


def test_a_library_logger_configured_elsewhere_still_goes_through_the_allow_list() -> None:
    """uvicorn's default logging config gives "uvicorn" its own handler and no propagation;
    ``configure`` takes that back so no library record can bypass the allow-list."""
    uvicorn_logger = logging.getLogger("uvicorn")
    bypass, buffer = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, list(uvicorn_logger.handlers), uvicorn_logger.propagate)
    uvicorn_logger.handlers[:] = [logging.StreamHandler(bypass)]
    uvicorn_logger.propagate = False
    try:
        logs.configure(json=True, level="DEBUG", stream=buffer)
        logging.getLogger("uvicorn.error").error("Exception in ASGI application: %s", "Claire Hutton")
    finally:
        structlog.reset_defaults()
        root.handlers[:], uvicorn_logger.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        uvicorn_logger.propagate = saved[3]
    assert bypass.getvalue() == ""
    assert [x["event"] for x in _lines(buffer)] == ["Exception in ASGI application: %s"]
    _clean(buffer)


def test_libraries_stay_at_warning_by_default() -> None:
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        logs.configure(json=True, level="DEBUG", stream=buffer)
        logging.getLogger("aio_pika.robust_connection").info("Connection to %s closed", "amqp://x")
        logging.getLogger("aio_pika.robust_connection").warning("Connection attempt failed")
        structlog.get_logger("t").debug("outbox_published", count=1)
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in logs.LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert [x["event"] for x in _lines(buffer)] == ["Connection attempt failed", "outbox_published"]


def test_context_and_trace_ids_are_bound(log_output: io.StringIO) -> None:
    provider = TracerProvider()
    with telemetry.use_provider(provider), telemetry.step("masp.test") as span, \
            telemetry.observed(message_id=MID, agency="nhs"):
        structlog.get_logger("t").info("delivery_duplicate")
    structlog.get_logger("t").info("after")
    inside, after = _lines(log_output)
    ctx = span.get_span_context()
    assert inside["message_id"] == MID and inside["agency"] == "nhs"
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert "message_id" not in after and "trace_id" not in after


def test_console_rendering_for_development() -> None:
    buffer = io.StringIO()
    try:
        logs.configure(json=False, stream=buffer)
        structlog.get_logger("t").info("adapter_running", agency="police", name="Claire")
    finally:
        structlog.reset_defaults()
        for h in [h for h in logging.getLogger().handlers if type(h).__name__ == "_MaspHandler"]:
            logging.getLogger().removeHandler(h)
    line = buffer.getvalue()
    assert "adapter_running" in line and "agency=police" in line and "name=[withheld]" in line
    assert not line.lstrip().startswith("{")
