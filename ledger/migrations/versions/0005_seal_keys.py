"""Idempotency keys of sealed work: a capture task queued once on the fleet's broker is
sealed once, even when it is delivered again (a worker died before acknowledging it).

The key is checked and written under the tree lock, in the transaction that
appends the task's records (``Store.append_many(seal_key=...)``).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "seal_keys",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("record_idx", sa.BigInteger, nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    # Only the guard against a second seal: the records themselves stay.
    op.drop_table("seal_keys")
