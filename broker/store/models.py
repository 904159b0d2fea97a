"""Tables. The audit table is append-only (triggers in ``db.py``); the rest is working state."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, DateTime, Index, LargeBinary, Text
from sqlmodel import Field, SQLModel


def _ts(index: bool = False, nullable: bool = False) -> datetime:
    return Field(sa_column=Column(DateTime(timezone=True), index=index, nullable=nullable))  # type: ignore[no-any-return]


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_entry"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(index=True)
    at: datetime = _ts(index=True)
    message_id: str | None = Field(default=None, index=True)
    delivery_id: str | None = Field(default=None, index=True)
    sender: str | None = Field(default=None, index=True)
    recipient: str | None = Field(default=None, index=True)
    decision: str | None = Field(default=None, index=True)
    clause: str | None = Field(default=None, index=True)
    leaf: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditSubjectRow(SQLModel, table=True):
    """Index from subject pseudonym to the entries about them (derived from the leaves)."""

    __tablename__ = "audit_subject"

    seq: int = Field(primary_key=True, foreign_key="audit_entry.seq")
    pseudonym: str = Field(primary_key=True, index=True)


class CheckpointRow(SQLModel, table=True):
    __tablename__ = "audit_checkpoint"

    size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    #: Right-edge subtree hashes after ``size`` leaves, so the next append is O(log n).
    frontier: str = Field(sa_column=Column(Text, nullable=False))
    note: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = _ts()


class DeliveryRow(SQLModel, table=True):
    """A delivery and its outbox entry: the relay publishes rows in state ``queued``."""

    __tablename__ = "delivery"

    delivery_id: str = Field(primary_key=True)
    message_id: str = Field(index=True)
    sender: str
    recipient: str = Field(index=True)
    masp_type: str
    state: str = Field(index=True)  # queued, published, acknowledged, rejected
    audit_seq: int
    #: Ciphertext only, kept until acknowledgement (P9); None afterwards.
    jwe: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = _ts(index=True)
    published_at: datetime | None = _ts(nullable=True)
    acked_at: datetime | None = _ts(nullable=True)
    retention_until: datetime | None = _ts(nullable=True)


class SeenMessageRow(SQLModel, table=True):
    """Every accepted message id, with its receipt, so a replay is refused across restarts."""

    __tablename__ = "seen_message"

    jti: str = Field(primary_key=True)
    sender: str
    payload_digest: str
    receipt: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = _ts()


class UsedAssertionRow(SQLModel, table=True):
    """Single-use agency authentication assertions (``jti``) until they expire."""

    __tablename__ = "used_assertion"

    jti: str = Field(primary_key=True)
    agency: str
    expires_at: datetime = _ts(index=True)


class ConsentRow(SQLModel, table=True):
    """The consent registry: one row per decision about one person; the newest row of a
    (``consent_ref``, ``subject``, ``kind``) is in force (broker/store/consent.py)."""

    __tablename__ = "consent"
    __table_args__ = (Index("ix_consent_key", "consent_ref", "subject", "kind"),)

    id: int | None = Field(default=None, primary_key=True)
    consent_ref: str = Field(index=True)
    #: The pseudonym of the person the decision is about (never an identifier); empty on
    #: rows from before consent was keyed by person, which no flow relies on.
    subject: str = Field(default="")
    #: ``victim`` (her consent to sharing) or ``intervention`` (the perpetrator's).
    kind: str = Field(default="")
    #: Kept for the history view: the subject pseudonym(s), space-separated.
    subjects: str
    status: str  # given, withdrawn
    #: JSON lists; an empty message_types list means every type for the purposes.
    purposes: str
    recipients: str
    message_types: str
    effective_date: date
    recorded_at: datetime = _ts()
    recorded_by: str  # agency id, or user id for the CLI
    message_id: str | None = Field(default=None)


class OverrideReviewRow(SQLModel, table=True):
    """The IG review queue: every break-glass use, pending until an IG officer decides."""

    __tablename__ = "override_review"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})  # override_used entry
    message_id: str = Field(index=True)
    sender: str
    recipient: str
    authoriser_role: str
    harm: str
    status: str = Field(index=True)  # pending, approved, rejected
    created_at: datetime = _ts()
    decided_by: str | None = None
    decided_at: datetime | None = _ts(nullable=True)
    decision_reason: str | None = None
