"""Tables that make the audit log a transparency log: stored tree nodes and witness cosignatures.

Both are append-only like ``audit_entry`` (triggers in ``db.py``): a node never changes once
its subtree is complete, and a cosignature is a witness's statement about one checkpoint.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, LargeBinary, Text
from sqlmodel import Field, SQLModel


class AuditNodeRow(SQLModel, table=True):
    """Perfect subtree ``(level, idx)`` = MTH of leaves ``[idx * 2**level, (idx + 1) * 2**level)``.

    Level 0 is not stored here: it is ``audit_entry.leaf_hash``.
    """

    __tablename__ = "audit_node"

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CosignatureRow(SQLModel, table=True):
    """A verified ``cosignature/v1`` line by one witness over one checkpoint."""

    __tablename__ = "audit_cosignature"

    size: int = Field(primary_key=True, foreign_key="audit_checkpoint.size",
                      sa_column_kwargs={"autoincrement": False})
    witness: str = Field(primary_key=True)
    agency: str = Field(index=True)
    timestamp: int = Field(sa_column=Column(BigInteger, nullable=False))
    line: str = Field(sa_column=Column(Text, nullable=False))
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
