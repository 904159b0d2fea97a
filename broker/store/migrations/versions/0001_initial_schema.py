"""Initial schema: every table, the audit tables' append-only triggers, runtime role grants.

The trigger and grant statements are copied here, not imported, so this revision stays what
it was when later revisions change them. docs/architecture.md: UPDATE, DELETE and TRUNCATE on
audit rows are refused by triggers (PostgreSQL: row and statement triggers, ENABLE ALWAYS, so
they fire under session_replication_role = replica too; SQLite: RAISE(ABORT)).

Revision ID: 0001
Revises:
Create Date: 2026-11-21 14:19:42.424736
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import AutoString

AUDIT_TABLES = ("audit_entry", "audit_subject", "audit_checkpoint", "audit_node", "audit_cosignature")
WORKING_TABLES = ("consent", "dead_letter", "delivery", "delivery_timer", "event_cursor", "message_trace",
                  "notice", "override_review", "route_pause", "seen_message", "used_assertion")

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER IF NOT EXISTS {table}_no_{op_.lower()} BEFORE {op_} ON {table}
        BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
    for table in AUDIT_TABLES for op_ in ("UPDATE", "DELETE")
]

PG_TRIGGERS = [
    """CREATE OR REPLACE FUNCTION masp_audit_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; END
       $$ LANGUAGE plpgsql""",
    *(stmt for table in AUDIT_TABLES for stmt in (
        f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION masp_audit_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION masp_audit_append_only()""",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_change",
        f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {table}_no_truncate",
    )),
]


def grants(role: str) -> list[str]:
    """The runtime role may only INSERT and SELECT audit rows (it does not own the schema)."""
    return [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"REVOKE ALL ON {', '.join(AUDIT_TABLES)} FROM {role}",
        f"GRANT SELECT, INSERT ON {', '.join(AUDIT_TABLES)} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(WORKING_TABLES)} TO {role}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_checkpoint',
    sa.Column('size', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('root_hash', sa.LargeBinary(), nullable=False),
    sa.Column('frontier', sa.Text(), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('size')
    )
    op.create_table('audit_entry',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('kind', AutoString(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', AutoString(), nullable=True),
    sa.Column('delivery_id', AutoString(), nullable=True),
    sa.Column('sender', AutoString(), nullable=True),
    sa.Column('recipient', AutoString(), nullable=True),
    sa.Column('decision', AutoString(), nullable=True),
    sa.Column('clause', AutoString(), nullable=True),
    sa.Column('leaf', sa.LargeBinary(), nullable=False),
    sa.Column('leaf_hash', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_clause'), ['clause'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_decision'), ['decision'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_recipient'), ['recipient'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_entry_sender'), ['sender'], unique=False)

    op.create_table('audit_node',
    sa.Column('level', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('idx', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('hash', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'idx')
    )
    op.create_table('consent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('consent_ref', AutoString(), nullable=False),
    sa.Column('subjects', AutoString(), nullable=False),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('purposes', AutoString(), nullable=False),
    sa.Column('recipients', AutoString(), nullable=False),
    sa.Column('message_types', AutoString(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', AutoString(), nullable=False),
    sa.Column('message_id', AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_consent_ref'), ['consent_ref'], unique=False)

    op.create_table('dead_letter',
    sa.Column('dead_letter_id', AutoString(), nullable=False),
    sa.Column('fingerprint', AutoString(), nullable=False),
    sa.Column('queue', AutoString(), nullable=False),
    sa.Column('reason', AutoString(), nullable=False),
    sa.Column('death_count', sa.Integer(), nullable=False),
    sa.Column('died_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', AutoString(), nullable=False),
    sa.Column('amqp_message_id', AutoString(), nullable=True),
    sa.Column('delivery_id', AutoString(), nullable=True),
    sa.Column('message_id', AutoString(), nullable=True),
    sa.Column('sender', AutoString(), nullable=True),
    sa.Column('recipient', AutoString(), nullable=True),
    sa.Column('masp_type', AutoString(), nullable=True),
    sa.Column('content_type', AutoString(), nullable=True),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('body_digest', AutoString(), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.Column('acted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acted_by', AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('dead_letter_id'),
    sa.UniqueConstraint('fingerprint')
    )
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dead_letter_delivery_id'), ['delivery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_queue'), ['queue'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_recorded_at'), ['recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_dead_letter_state'), ['state'], unique=False)

    op.create_table('delivery',
    sa.Column('delivery_id', AutoString(), nullable=False),
    sa.Column('message_id', AutoString(), nullable=False),
    sa.Column('sender', AutoString(), nullable=False),
    sa.Column('recipient', AutoString(), nullable=False),
    sa.Column('masp_type', AutoString(), nullable=False),
    sa.Column('state', AutoString(), nullable=False),
    sa.Column('audit_seq', sa.Integer(), nullable=False),
    sa.Column('jwe', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retention_until', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('delivery_id')
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_recipient'), ['recipient'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_state'), ['state'], unique=False)

    op.create_table('delivery_timer',
    sa.Column('delivery_id', AutoString(), nullable=False),
    sa.Column('escalate_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('hours', sa.Float(), nullable=False),
    sa.Column('clause', AutoString(), nullable=True),
    sa.Column('escalated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('delivery_id')
    )
    with op.batch_alter_table('delivery_timer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_timer_escalate_at'), ['escalate_at'], unique=False)

    op.create_table('event_cursor',
    sa.Column('name', AutoString(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('message_trace',
    sa.Column('message_id', AutoString(), nullable=False),
    sa.Column('traceparent', AutoString(), nullable=False),
    sa.Column('tracestate', AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('message_id')
    )
    op.create_table('notice',
    sa.Column('notice_id', AutoString(), nullable=False),
    sa.Column('agency', AutoString(), nullable=False),
    sa.Column('kind', AutoString(), nullable=False),
    sa.Column('delivery_id', AutoString(), nullable=False),
    sa.Column('message_id', AutoString(), nullable=False),
    sa.Column('token', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('notice_id')
    )
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_notice_agency'), ['agency'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_notice_delivery_id'), ['delivery_id'], unique=False)

    op.create_table('override_review',
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('message_id', AutoString(), nullable=False),
    sa.Column('sender', AutoString(), nullable=False),
    sa.Column('recipient', AutoString(), nullable=False),
    sa.Column('authoriser_role', AutoString(), nullable=False),
    sa.Column('harm', AutoString(), nullable=False),
    sa.Column('status', AutoString(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('decided_by', AutoString(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('seq')
    )
    with op.batch_alter_table('override_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_override_review_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_override_review_status'), ['status'], unique=False)

    op.create_table('route_pause',
    sa.Column('recipient', AutoString(), nullable=False),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paused_by', AutoString(), nullable=False),
    sa.Column('reason', AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('recipient')
    )
    op.create_table('seen_message',
    sa.Column('jti', AutoString(), nullable=False),
    sa.Column('sender', AutoString(), nullable=False),
    sa.Column('payload_digest', AutoString(), nullable=False),
    sa.Column('receipt', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    op.create_table('used_assertion',
    sa.Column('jti', AutoString(), nullable=False),
    sa.Column('agency', AutoString(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    with op.batch_alter_table('used_assertion', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_used_assertion_expires_at'), ['expires_at'], unique=False)

    op.create_table('audit_cosignature',
    sa.Column('size', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('witness', AutoString(), nullable=False),
    sa.Column('agency', AutoString(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.Column('line', sa.Text(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['size'], ['audit_checkpoint.size'], ),
    sa.PrimaryKeyConstraint('size', 'witness')
    )
    with op.batch_alter_table('audit_cosignature', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_cosignature_agency'), ['agency'], unique=False)

    op.create_table('audit_subject',
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('pseudonym', AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['seq'], ['audit_entry.seq'], ),
    sa.PrimaryKeyConstraint('seq', 'pseudonym')
    )
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_subject_pseudonym'), ['pseudonym'], unique=False)


    postgres = op.get_bind().dialect.name == "postgresql"
    for stmt in PG_TRIGGERS if postgres else SQLITE_TRIGGERS:
        op.execute(stmt)
    config = op.get_context().config
    role = config.attributes.get("runtime_role") if config is not None else None
    if role and postgres:
        for stmt in grants(role):
            op.execute(stmt)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS masp_audit_append_only() CASCADE")
    with op.batch_alter_table('audit_subject', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_subject_pseudonym'))

    op.drop_table('audit_subject')
    with op.batch_alter_table('audit_cosignature', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_cosignature_agency'))

    op.drop_table('audit_cosignature')
    with op.batch_alter_table('used_assertion', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_used_assertion_expires_at'))

    op.drop_table('used_assertion')
    op.drop_table('seen_message')
    op.drop_table('route_pause')
    with op.batch_alter_table('override_review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_override_review_status'))
        batch_op.drop_index(batch_op.f('ix_override_review_message_id'))

    op.drop_table('override_review')
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notice_delivery_id'))
        batch_op.drop_index(batch_op.f('ix_notice_created_at'))
        batch_op.drop_index(batch_op.f('ix_notice_agency'))

    op.drop_table('notice')
    op.drop_table('message_trace')
    op.drop_table('event_cursor')
    with op.batch_alter_table('delivery_timer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_timer_escalate_at'))

    op.drop_table('delivery_timer')
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_state'))
        batch_op.drop_index(batch_op.f('ix_delivery_recipient'))
        batch_op.drop_index(batch_op.f('ix_delivery_message_id'))
        batch_op.drop_index(batch_op.f('ix_delivery_created_at'))

    op.drop_table('delivery')
    with op.batch_alter_table('dead_letter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dead_letter_state'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_recorded_at'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_queue'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_message_id'))
        batch_op.drop_index(batch_op.f('ix_dead_letter_delivery_id'))

    op.drop_table('dead_letter')
    with op.batch_alter_table('consent', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_consent_ref'))

    op.drop_table('consent')
    op.drop_table('audit_node')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_sender'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_recipient'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_message_id'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_kind'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_delivery_id'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_decision'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_clause'))
        batch_op.drop_index(batch_op.f('ix_audit_entry_at'))

    op.drop_table('audit_entry')
    op.drop_table('audit_checkpoint')
