"""Capture queue: jobs claimed by `evidence worker` processes on any machine.

The queue lives in the ledger database so a job is marked done in the same
transaction that appends its exhibit record: a job is never sealed twice,
and never marked done without its record.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        # SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("operator", sa.String(200)),
        sa.Column("note", sa.Text),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("lease_until", sa.Float),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.Column("record_idx", sa.BigInteger),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])


def downgrade() -> None:
    # The queue holds no evidence (exhibits are in the records), so it may go.
    op.drop_index("ix_jobs_state_id", "jobs")
    op.drop_table("jobs")
