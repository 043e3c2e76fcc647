"""a citizen's tickets by e-mail address (supervisors' search, the mail tests) (issue #12)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-13 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_requester_email', [sa.text('lower(requester_email)')],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_requester_email')
