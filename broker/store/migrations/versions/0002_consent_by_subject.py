"""Consent keyed by person and kind: ``subject`` and ``kind`` columns and their index.

A consent decision was looked up by its reference alone, so any agency that learnt a
reference could record or withdraw it. Each row now names the one person it is about (a
pseudonym) and whether it is the victim's consent or the perpetrator's; the registry reads
the key (consent_ref, subject, kind). Older rows keep empty values: no flow relies on them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 01:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.add_column(sa.Column('subject', AutoString(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('kind', AutoString(), nullable=False, server_default=''))
        batch_op.create_index('ix_consent_key', ['consent_ref', 'subject', 'kind'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_key')
        batch_op.drop_column('kind')
        batch_op.drop_column('subject')
