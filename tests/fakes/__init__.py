"""Shared recording fakes of external systems (STYLE practice 5)."""
