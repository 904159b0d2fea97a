"""Tables for delivery you can trust: dead letters, safeguarding timers, notices, paused routes,
and the case-event cursor. Working state, not audit: every change to it is audited separately.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, LargeBinary, Text
from sqlmodel import Field, SQLModel


def _ts(index: bool = False, nullable: bool = False) -> datetime:
    return Field(sa_column=Column(DateTime(timezone=True), index=index, nullable=nullable))  # type: ignore[no-any-return]


class DeadLetterRow(SQLModel, table=True):
    """A message RabbitMQ dead-lettered, moved out of ``masp.dead-letters`` for ops to act on.

    Only metadata is ever shown; ``body`` (ciphertext or a poison payload) is kept only until
    the dead letter is replayed or purged, and is never printed or logged.
    """

    __tablename__ = "dead_letter"

    dead_letter_id: str = Field(primary_key=True)
    #: Hash over body and death record, so a dead letter redelivered to the keeper is kept once.
    fingerprint: str = Field(unique=True)
    queue: str = Field(index=True)  # the queue it died in (and is replayed to)
    reason: str  # x-death reason: rejected, delivery_limit, expired, maxlen
    death_count: int
    died_at: datetime | None = _ts(nullable=True)
    recorded_at: datetime = _ts(index=True)
    state: str = Field(index=True)  # pending, replayed, purged
    amqp_message_id: str | None = None  # sanitised: a bounded code, never free text
    delivery_id: str | None = Field(default=None, index=True)
    message_id: str | None = Field(default=None, index=True)
    sender: str | None = None
    recipient: str | None = None
    masp_type: str | None = None
    content_type: str | None = None
    size: int
    body_digest: str
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    acted_at: datetime | None = _ts(nullable=True)
    acted_by: str | None = None


class DeliveryTimerRow(SQLModel, table=True):
    """A safeguarding deadline: escalate if the delivery is not acknowledged by ``escalate_at``."""

    __tablename__ = "delivery_timer"

    delivery_id: str = Field(primary_key=True)
    escalate_at: datetime = _ts(index=True)
    hours: float
    clause: str | None = None
    escalated_at: datetime | None = _ts(nullable=True)


class NoticeRow(SQLModel, table=True):
    """A signed notice from the broker to an agency: a non-delivery report or an escalation."""

    __tablename__ = "notice"

    notice_id: str = Field(primary_key=True)
    agency: str = Field(index=True)  # who the notice is for (the sender of the message)
    kind: str  # non_delivery, escalation
    delivery_id: str = Field(index=True)
    message_id: str
    token: str = Field(sa_column=Column(Text, nullable=False))  # JWS, typ masp-notice+jwt
    created_at: datetime = _ts(index=True)


class RoutePauseRow(SQLModel, table=True):
    """A paused route: the outbox relay publishes nothing to this recipient until resumed."""

    __tablename__ = "route_pause"

    recipient: str = Field(primary_key=True)
    paused_at: datetime = _ts()
    paused_by: str
    reason: str | None = None


class EventCursorRow(SQLModel, table=True):
    """How far the case-event feed has published the audit log (the last seq sent)."""

    __tablename__ = "event_cursor"

    name: str = Field(primary_key=True)
    seq: int
