"""Failure grouping: message templates, signatures and fuzzy matching (Bridge 1)."""
