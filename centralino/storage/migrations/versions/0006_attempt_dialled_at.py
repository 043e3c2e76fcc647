"""recall_attempts.dialled_at: when the citizen was dialled (the figures' time to first call)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 03:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recall_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dialled_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('recall_attempts', schema=None) as batch_op:
        batch_op.drop_column('dialled_at')
