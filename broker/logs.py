"""structlog set-up: stderr only, JSON in production, console in development, and an allow-list.

Only the keys named in ``ALLOWED`` ever leave a log event, and each key's value must look
like what the key means (an id like an id, an agency one of the agencies, a code one token),
so neither a careless ``log.info(..., name=...)`` nor ``agency=<a name>`` can put personal
data in the logs: anything else is replaced by ``[withheld]``.

Exceptions are rendered as their types, codes and frames only: no message text (pydantic and
database errors quote the values they failed on), no locals. Log records of libraries
(aio-pika, aiormq, uvicorn, sqlalchemy, ...) go through the same processors, are kept at
WARNING by default, and keep only their message *template*, never its arguments.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog
from opentelemetry import trace

from broker.crypto.keys import AGENCIES, BROKER
from broker.errors import MaspError

WITHHELD = "[withheld]"

#: Libraries whose stdlib logs are routed through the processors below (at ``library_level``).
LIBRARY_LOGGERS = ("aio_pika", "aiormq", "pamqp", "uvicorn", "uvicorn.error", "uvicorn.access",
                   "sqlalchemy", "asyncpg", "aiosqlite", "httpx", "httpcore", "fastapi",
                   "starlette", "opentelemetry", "asyncio", "alembic")

_ID = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]{7,63}")  # UUIDs and hex digests: no letters beyond f
_TOKEN = re.compile(r"[A-Za-z0-9_.:/\-]{1,64}")  # one word: no spaces, no @, no free text
_EVENT = re.compile(r"[a-z][a-z0-9_.]{0,63}")
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")
_TIMESTAMP = re.compile(r"[0-9T:.+\-Z]{10,40}")
_LEVELS = frozenset({"debug", "info", "warning", "warn", "error", "critical", "exception", "fatal",
                     "notset"})
_AGENCY_IDS = frozenset((*AGENCIES, BROKER))
_META = ("_record", "_from_structlog")


class _RenderedException(str):
    """An exception as rendered by ``render_exception``; any other ``exception`` value is withheld."""

    __slots__ = ()


def _pattern(rx: re.Pattern[str]) -> Callable[[object], bool]:
    return lambda v: v is None or (isinstance(v, str) and rx.fullmatch(v) is not None)


def _number(v: object) -> bool:
    return v is None or isinstance(v, bool | int | float)


def _agency(v: object) -> bool:
    return v is None or v in _AGENCY_IDS


_ids = _pattern(_ID)
_token = _pattern(_TOKEN)

#: Every key a log line may carry, and what its value must look like.
ALLOWED: dict[str, Callable[[object], bool]] = {
    "event": lambda v: isinstance(v, str) and _EVENT.fullmatch(v) is not None,
    "level": lambda v: v in _LEVELS,
    "timestamp": _pattern(_TIMESTAMP),
    "logger": _token,
    "exception": lambda v: isinstance(v, _RenderedException),
    "message_id": _ids, "delivery_id": _ids, "dead_letter_id": _ids, "notice_id": _ids,
    "trace_id": _pattern(re.compile(r"[0-9a-f]{32}")),
    "span_id": _pattern(re.compile(r"[0-9a-f]{16}")),
    "agency": _agency, "recipient": _agency, "sender": _agency,
    "masp_type": _pattern(re.compile(r"[a-z][a-z_]{1,47}")),
    "code": _token, "via": _token, "status": _token, "rule": _token, "queue": _token,
    "consumer": _token, "state": _token, "kind": _token, "what": _token, "reason": _token,
    "by": _token, "clause": _token,
    "error": _pattern(_TYPE_NAME),
    "count": _number, "deliveries": _number, "redelivered": _number, "retry_in_s": _number,
    "ok": _number, "checks": _number, "seq": _number, "size": _number, "attempt": _number,
    "attempts": _number, "duration_ms": _number, "previous_size": _number, "witnesses": _number,
}
#: Kept for callers that only need the names.
ALLOWED_KEYS = frozenset(ALLOWED)


def allow_list(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Withhold every key not in ``ALLOWED`` and every value that does not fit its key."""
    foreign = event.get("_from_structlog") is False
    for key in list(event):
        if key in _META:
            continue
        value = event[key]
        if key == "event" and foreign:
            # a library's message template (its arguments were never formatted in)
            event[key] = " ".join(str(value).split())[:200]
            continue
        check = ALLOWED.get(key)
        if check is None or not check(value):
            event[key] = WITHHELD
    return event


def render_exception(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Turn ``exc_info`` into ``exception``: types, codes and frames, never messages or locals."""
    if "exception" in event:  # passed by the caller, e.g. exception=str(exc): not ours to trust
        event["exception"] = WITHHELD
    exc_info = event.pop("exc_info", None)
    if not exc_info:
        return event
    if isinstance(exc_info, BaseException):
        exc: BaseException | None = exc_info
    elif isinstance(exc_info, tuple):
        exc = exc_info[1]
    else:
        exc = sys.exc_info()[1]
    if exc is not None:
        event["exception"] = _RenderedException(describe_exception(exc))
    return event


def describe_exception(exc: BaseException) -> str:
    """A traceback without a single value in it: frames, exception types and error codes."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    blocks = [_describe_one(e) for e in reversed(chain)]
    return "\n\nThe above led to:\n\n".join(blocks)


def _describe_one(exc: BaseException) -> str:
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{_short(f.filename)}", line {f.lineno}, in {f.name}'
              for f in traceback.extract_tb(exc.__traceback__)]
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(exc, MaspError):
        name += f" [{exc.code}]"  # the detail goes to the caller and the audit, not the logs
    lines.append(name)
    return "\n".join(lines)


def _short(path: str) -> str:
    """``aio_pika/queue.py`` or ``broker/exchange.py`` rather than a machine's absolute path."""
    parts = path.split("/")
    for root in ("site-packages", "broker", "adapters", "schemas", "tests", "bench"):
        if root in parts:
            i = len(parts) - 1 - parts[::-1].index(root)
            return "/".join(parts[i + (root == "site-packages"):])
    return parts[-1]


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The current OpenTelemetry trace and span ids, so a log line leads to its trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event.setdefault("span_id", format(ctx.span_id, "016x"))
    return event


class _MaspHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler ``configure`` installs on the root logger (replaced on reconfiguration)."""


def configure(*, json: bool = False, level: str = "INFO", library_level: str = "WARNING",
              stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        render_exception,
        allow_list,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = _MaspHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        use_get_message=False,  # the template, never the arguments
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _MaspHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in LIBRARY_LOGGERS:
        # Whatever configured these loggers before (uvicorn's default dictConfig gives
        # "uvicorn" a handler of its own and stops propagation) would route their records
        # around the allow-list: every library record goes to the root handler, and only there.
        library = logging.getLogger(name)
        library.setLevel(library_level.upper())
        library.handlers.clear()
        library.propagate = True
        library.disabled = False


__all__ = ["ALLOWED", "ALLOWED_KEYS", "LIBRARY_LOGGERS", "WITHHELD", "add_trace_ids", "allow_list",
           "configure", "describe_exception", "render_exception"]
