"""Domain errors of the control plane, in one place (STYLE practice 7)."""

from __future__ import annotations


class OpenaseError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(OpenaseError):
    """A setting or config file is missing or malformed; the message names it."""


class PayloadError(OpenaseError):
    """A webhook payload does not have the shape its event promises."""
