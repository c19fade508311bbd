"""Fixtures of the web page's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from tests.conftest import AppWith
from tests.support.signing_in import TOKEN


@pytest.fixture
async def web(app_with: AppWith) -> AsyncIterator[httpx.AsyncClient]:
    """The app with an admin token set (reads then need a login by default)."""
    async with app_with(admin_token=SecretStr(TOKEN)) as http:
        yield http
