"""tickets by the requester's phone: a caller's earlier tickets in the screen pop (issue #11)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 10:00:00
"""
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_requester_phone', ['requester_phone', 'created_at'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_requester_phone')
