"""Persistence: the database (source of truth) and file storage."""
