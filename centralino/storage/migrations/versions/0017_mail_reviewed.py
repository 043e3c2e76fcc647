"""a quarantined message a supervisor looked at: who and when; messages by arrival (the
board's counts of today's mail) (issue #12)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reviewed_by', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_mail_messages_fetched_at', ['mailbox', 'fetched_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mail_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_messages_fetched_at')
        batch_op.drop_column('reviewed_at')
        batch_op.drop_column('reviewed_by')
