"""structlog set-up: stderr only, JSON in production, and an allow-list of keys.

Only the keys named here ever leave a log event, so a careless ``log.info(..., name=...)``
cannot put personal data in the logs: unknown keys are replaced by a marker.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

ALLOWED_KEYS = frozenset({
    "event", "level", "timestamp", "logger", "exception", "message_id", "delivery_id",
    "trace_id", "agency", "masp_type", "code", "via", "count", "deliveries", "status",
    "redelivered", "retry_in_s", "ok", "checks", "recipient", "rule", "seq", "size",
})


def allow_list(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key not in ALLOWED_KEYS:
            event[key] = "[withheld]"
    return event


def configure(*, json: bool = False, level: str = "INFO") -> None:
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            allow_list,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
