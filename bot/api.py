"""Read API, health and metrics (`/api/v1/...`, `/healthz`, `/metrics`)."""

from __future__ import annotations

from starlette.routing import BaseRoute


def routes() -> list[BaseRoute]:
    return []
