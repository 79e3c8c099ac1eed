"""Alembic migrations of the newsletter schema."""
