"""agents, offers and queue_log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 04:31:45.259121
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('agent_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_events_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agent_events_at'), ['at'], unique=False)

    op.create_table('offers',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('call_id', sa.String(length=32), nullable=False),
    sa.Column('agent_id', sa.String(length=64), nullable=False),
    sa.Column('offered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offers_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_offers_call_id'), ['call_id'], unique=False)

    op.create_table('queue_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('call_id', sa.String(length=32), nullable=False),
    sa.Column('queue', sa.String(length=64), nullable=False),
    sa.Column('agent', sa.String(length=64), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('data1', sa.String(length=255), nullable=False),
    sa.Column('data2', sa.String(length=255), nullable=False),
    sa.Column('data3', sa.String(length=255), nullable=False),
    sa.Column('data4', sa.String(length=255), nullable=False),
    sa.Column('data5', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('queue_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_queue_log_at'), ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_queue_log_call_id'), ['call_id'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.alter_column('config_version', existing_type=sa.String(length=16),
                              type_=sa.String(length=32), existing_nullable=False)
        batch_op.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('connected_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('agent_id', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_calls_agent_id'), ['agent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_calls_agent_id'))
        batch_op.drop_column('agent_id')
        batch_op.drop_column('connected_at')
        batch_op.drop_column('queued_at')
        batch_op.alter_column('config_version', existing_type=sa.String(length=32),
                              type_=sa.String(length=16), existing_nullable=False)

    with op.batch_alter_table('queue_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_queue_log_call_id'))
        batch_op.drop_index(batch_op.f('ix_queue_log_at'))

    op.drop_table('queue_log')
    with op.batch_alter_table('offers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_offers_call_id'))
        batch_op.drop_index(batch_op.f('ix_offers_agent_id'))

    op.drop_table('offers')
    with op.batch_alter_table('agent_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_events_at'))
        batch_op.drop_index(batch_op.f('ix_agent_events_agent_id'))

    op.drop_table('agent_events')
