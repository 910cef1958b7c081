"""Alembic environment: migrations always run on a connection we hand in.

Never read from an alembic.ini or the working directory, so the migrations
work the same from a source tree and from an installed wheel. The caller
holds the transaction (and, on PostgreSQL, an advisory lock), so two
processes migrating at once cannot interleave.
"""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("ledger migrations run only through ledger.migrations (no alembic.ini)")
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
