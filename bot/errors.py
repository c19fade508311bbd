"""Domain errors of the control plane, in one place (STYLE practice 7)."""

from __future__ import annotations

from adapters.base import PayloadError as _PayloadError


class OpenaseError(Exception):
    """Base of every error we raise on purpose."""


class ConfigError(OpenaseError):
    """A setting or config file is missing or malformed; the message names it."""


class ConfigUnavailable(OpenaseError):
    """A repository's `.github/openase.yml` cannot be read now; nothing of that repository
    runs until it can (never the default workflow in its place). The message says why."""


# Raised by adapters (which never import bot); re-exported so bot code catches one name.
PayloadError = _PayloadError
