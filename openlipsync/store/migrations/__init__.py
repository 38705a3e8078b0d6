"""Alembic migrations, shipped inside the package so `open_database` can upgrade any install."""
