"""recall_requests and recall_attempts (issue #4)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

OPEN = sa.text("status IN ('waiting', 'calling')")


def upgrade() -> None:
    op.create_table('recall_requests',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('number_type', sa.String(length=24), nullable=False),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=8), nullable=False),
    sa.Column('slot_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.Column('portal_ref', sa.String(length=128), nullable=True),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recall_requests', schema=None) as batch_op:
        batch_op.create_index('ix_recall_requests_client', ['client'], unique=False)
        batch_op.create_index('ix_recall_requests_number_topic_status',
                              ['number', 'topic', 'status'], unique=False)
        batch_op.create_index('ix_recall_requests_status_due', ['status', 'due_at'], unique=False)
    # One open request per number and topic, race-proof (a partial index: both backends).
    op.create_index('ux_recall_requests_open', 'recall_requests', ['number', 'topic'],
                    unique=True, sqlite_where=OPEN, postgresql_where=OPEN)

    op.create_table('recall_attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=False),
    sa.Column('agent_id', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['request_id'], ['recall_requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('recall_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_recall_attempts_request_id', ['request_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recall_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_recall_attempts_request_id')
    op.drop_table('recall_attempts')
    op.drop_index('ux_recall_requests_open', table_name='recall_requests')
    with op.batch_alter_table('recall_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_recall_requests_status_due')
        batch_op.drop_index('ix_recall_requests_number_topic_status')
        batch_op.drop_index('ix_recall_requests_client')
    op.drop_table('recall_requests')
