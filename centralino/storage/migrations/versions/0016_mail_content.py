"""what an e-mail carries on its ticket: the quoted text, the sanitised HTML, the attachments
refused (and why); the addresses our mail bounced from (issue #12)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-11 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quoted', sa.Text(), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('html', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('refused', sa.Text(), nullable=False, server_default=''))
    op.create_table('bounced_addresses',
    sa.Column('address', sa.String(length=254), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('ticket_id', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('address')
    )


def downgrade() -> None:
    op.drop_table('bounced_addresses')
    with op.batch_alter_table('ticket_messages', schema=None) as batch_op:
        batch_op.drop_column('refused')
        batch_op.drop_column('html')
        batch_op.drop_column('quoted')
