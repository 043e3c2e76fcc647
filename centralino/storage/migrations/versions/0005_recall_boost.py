"""recall_requests.boost: the priority a caller who asked in the line keeps

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 21:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('recall_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('boost', sa.Float(), nullable=False,
                                      server_default=sa.text('0')))


def downgrade() -> None:
    with op.batch_alter_table('recall_requests', schema=None) as batch_op:
        batch_op.drop_column('boost')
