"""Confining a run: the bubblewrap sandbox and its egress proxy."""
