"""Slash commands: their grammar, who may use them, the registry and the handlers."""
