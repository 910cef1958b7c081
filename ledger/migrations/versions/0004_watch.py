"""Watch lists: what `evidence watch run` probes, when, and the alerts it owes.

Due times live in the database so a scheduler killed and started again goes
on where it was; what each probe saw is in its signed ``probe`` record (the
``last`` column only caches it for change detection).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watches",
        # SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("every_s", sa.Integer, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("next_due", sa.Float, nullable=False),
        sa.Column("last_probe_idx", sa.BigInteger),
        sa.Column("last", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
    )
    op.create_index("ix_watches_state_due", "watches", ["state", "next_due"])
    op.create_table(
        "watch_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("watch_id", sa.BigInteger, nullable=False),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("probe_idx", sa.BigInteger, nullable=False),
        sa.Column("exhibit_idx", sa.BigInteger),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("webhook", sa.Text),
        sa.Column("delivery", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try", sa.Float),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_watch_events_delivery", "watch_events", ["delivery", "next_try"])
    op.create_index("ix_watch_events_time", "watch_events", ["time"])


def downgrade() -> None:
    # Schedules and alert state only: the evidence (probe records, exhibits) is in the records.
    op.drop_index("ix_watch_events_time", "watch_events")
    op.drop_index("ix_watch_events_delivery", "watch_events")
    op.drop_table("watch_events")
    op.drop_index("ix_watches_state_due", "watches")
    op.drop_table("watches")
