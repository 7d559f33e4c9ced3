"""Alembic environment: runs on the connection `tenant_tables.migrate` hands over."""

from alembic import context

from annostack.adapters.tenant_tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
