"""Initial ledger schema: tree state, records, Merkle nodes, checkpoints, keys, anchors, meta.

This is exactly the schema written by evidence-chain before versioned
migrations, so a ledger created then is stamped at this revision and
upgraded from here.

Revision ID: 0001
Revises: none
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tree_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_leaf", sa.LargeBinary, nullable=False),
        sa.Column("last_time", sa.String(40), nullable=False),
    )
    op.create_table(
        "records",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("leaf", sa.LargeBinary, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("case_id", sa.String(200)),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_records_case_id", "records", ["case_id"])
    op.create_table(
        "nodes",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(64), primary_key=True),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("added_index", sa.BigInteger),
    )
    op.create_table(
        "anchors",
        sa.Column("record_idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("checkpoint_size", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("service", sa.String(500), nullable=False),
        sa.Column("time", sa.String(40)),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("chain_sha256", sa.String(64)),
    )
    op.create_index("ix_anchors_checkpoint_size", "anchors", ["checkpoint_size"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    raise RuntimeError("a ledger is append-only: its tables are never dropped by a migration")
