"""The trace context of accepted messages, so the outbox relay publishes each delivery in the
trace of the submission that caused it, in whichever broker process relays it.

Only the W3C ``traceparent``/``tracestate`` pair is kept, and only when the submission
arrived with (or this broker started) a valid trace: an untraced deployment writes nothing.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, SQLModel

from broker import telemetry


class MessageTraceRow(SQLModel, table=True):
    __tablename__ = "message_trace"

    message_id: str = Field(primary_key=True)
    traceparent: str
    tracestate: str | None = None


def remember(session: AsyncSession, message_id: str) -> dict[str, str]:
    """Keep the current trace context for ``message_id`` (in the caller's transaction); the
    trace headers kept, empty if there is no trace."""
    headers = telemetry.inject()
    if "traceparent" not in headers:
        return {}
    session.add(MessageTraceRow(message_id=message_id, traceparent=headers["traceparent"],
                                tracestate=headers.get("tracestate")))
    return {k: headers[k] for k in telemetry.TRACE_HEADERS if k in headers}
