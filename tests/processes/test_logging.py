"""Log lines never carry secrets, whichever code put them there."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from bot.logging import QuietCrons, configure_logging, redact


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("token", "ghs_16C7e42F292c6912E7710c838347Ae178B4a"),
        ("webhook_secret", "anything at all"),
        ("Authorization", "Bearer abc"),
        ("private_key", "-----BEGIN PRIVATE KEY-----"),
        ("api_key", "lin_api_123"),
    ],
)
def test_secret_named_keys_are_masked(key: str, value: str) -> None:
    assert redact(None, "info", {key: value, "event": "x"}) == {key: "[redacted]", "event": "x"}


@pytest.mark.parametrize(
    "text",
    [
        "using ghs_16C7e42F292c6912E7710c838347Ae178B4a for the call",
        "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
        "jwt eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjQyfQ.c2lnbmF0dXJl here",
        "header Authorization: Bearer 0123456789abcdef",
        "url postgresql://openase:hunter2hunter2@db:5432/openase",
    ],
)
def test_credential_shaped_values_are_masked(text: str) -> None:
    out = redact(None, "info", {"event": "x", "detail": text})["detail"]
    assert "[redacted]" in out
    for secret in ("ghs_16C7", "github_pat_11", "eyJhbGci", "0123456789abcdef", "hunter2"):
        assert secret not in out


def test_json_lines_carry_context_and_no_secret() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(json=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        structlog.contextvars.bind_contextvars(delivery_id="d-1", repository="acme/api")
        structlog.get_logger("t").info("called", token="ghs_16C7e42F292c6912E7710c838347Ae178B4a")
    finally:
        structlog.contextvars.clear_contextvars()
        root.handlers[:], level = saved
        root.setLevel(level)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["delivery_id"] == "d-1"
    assert line["repository"] == "acme/api"
    assert line["token"] == "[redacted]"
    assert "ghs_" not in stream.getvalue()


def test_the_frequent_crons_are_not_logged_but_their_failures_are() -> None:
    quiet = QuietCrons()

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("arq.worker", level, __file__, 1, message, None, None)

    assert not quiet.filter(record(logging.INFO, "  0.02s → engine_tick()"))
    assert not quiet.filter(record(logging.INFO, "  0.00s ← perform_outbox_cron ● 0"))
    assert quiet.filter(record(logging.ERROR, "  0.02s ! engine_tick failed, NameError: x"))
    assert quiet.filter(record(logging.INFO, "  0.01s → 12:ingest_delivery(3)"))
