"""Crawl state: a crawl's frontier and the pages it has sealed.

Kept in the ledger database so that a page is marked done in the same
transaction that appends its exhibit record: a crawl resumed after a kill
never captures a page twice, and never marks a page done without its record.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crawls",
        # SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid).
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(200), nullable=False),
        sa.Column("start_url", sa.Text, nullable=False),
        sa.Column("operator", sa.String(200)),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.Column("record_idx", sa.BigInteger),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "crawl_pages",
        sa.Column("crawl_id", sa.BigInteger, sa.ForeignKey("crawls.id"), primary_key=True),
        # URLs can exceed a PostgreSQL btree entry: the key is their SHA-256.
        sa.Column("url_key", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("depth", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("record_idx", sa.BigInteger),
        sa.Column("links", sa.Text),
        sa.Column("out_of_scope", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_crawl_pages_state_seq", "crawl_pages", ["crawl_id", "state", "seq"])


def downgrade() -> None:
    # Crawl state holds no evidence (exhibits and the crawl record are records).
    op.drop_index("ix_crawl_pages_state_seq", "crawl_pages")
    op.drop_table("crawl_pages")
    op.drop_table("crawls")
