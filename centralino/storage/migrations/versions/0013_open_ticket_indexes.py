"""partial indexes of the open tickets: the board, the backlog and the oldest stay quick with
years of closed tickets (issue #11's bench: 1,000,000 tickets)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('nuovo', 'preso in carico', 'in attesa del cittadino', 'escalato')")
INDEXES = {
    'ix_tickets_open_due': ['resolution_due', 'created_at'],
    'ix_tickets_open_topic': ['topic', 'level', 'resolution_due'],
    'ix_tickets_open_age': ['created_at'],
    'ix_tickets_open_owner': ['owner', 'resolution_due', 'created_at'],
}


ESCALATED = sa.text("state = 'escalato'")


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, 'tickets', columns, unique=False, postgresql_where=OPEN,
                        sqlite_where=OPEN)
    op.create_index('ix_tickets_escalated', 'tickets', ['level', 'resolution_due', 'created_at'],
                    unique=False, postgresql_where=ESCALATED, sqlite_where=ESCALATED)


def downgrade() -> None:
    op.drop_index('ix_tickets_escalated', table_name='tickets')
    for name in INDEXES:
        op.drop_index(name, table_name='tickets')
