"""Schema revisions, oldest first (see each revision's docstring)."""
