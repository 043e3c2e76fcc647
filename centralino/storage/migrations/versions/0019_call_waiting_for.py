"""who a waiting caller is offered to, if a transfer named them (issue #13): a restarted
service puts a caller transferred to an agent or a second-level group back waiting for them

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-14 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_for', sa.String(length=255), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('waiting_for')
