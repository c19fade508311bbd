"""The control plane's tables: the mirror of trackers and the workflow engine's state."""
