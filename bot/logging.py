"""structlog set-up: JSON lines in production, readable lines on a terminal; secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

# Keys whose values never reach a log line, whatever code put them there.
_SECRET_KEY = re.compile(r"(secret|token|password|private_key|authorization|api_key)", re.I)
# Values that look like credentials (GitHub tokens, JWTs, bearer headers, URL passwords).
_SECRET_VALUE = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{10,}|github_pat_[A-Za-z0-9_]{10,}|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_.-]+"
    r"|(?i:bearer|token)\s+[A-Za-z0-9_.\-]{8,}|(?<=://)[^/@\s:]+:[^/@\s]+(?=@))"
)


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and credential-shaped strings."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key) and value is not None:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = _SECRET_VALUE.sub("[redacted]", value)
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # typeshed's generic
    """Writes to whatever `sys.stderr` is at the time of each record, not at configuration
    (a replaced stderr, such as a test's capture, may be closed by then), unless a stream
    is set explicitly with `setStream`."""

    def __init__(self) -> None:
        super().__init__()
        self._explicit: TextIO | None = None

    @property
    def stream(self) -> TextIO:
        return self._explicit if self._explicit is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        if value is not sys.stderr:
            self._explicit = value


def configure_logging(
    *, json: bool | None = None, level: int = logging.INFO, process: str | None = None
) -> None:
    """Route structlog and stdlib logging through one pipeline to stderr. `process` names
    this process on every line (`openase up`'s children share its stderr)."""
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    if process is not None:
        shared.insert(0, _ProcessName(process))
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            # First: a line below the level is dropped before any work is done for it (the
            # web app's per-delivery debug line went through every processor, then dropped).
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's access log would print every webhook line twice; our own line carries more.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    arq = logging.getLogger("arq.worker")
    if not any(isinstance(f, QuietCrons) for f in arq.filters):
        arq.addFilter(QuietCrons())


class _ProcessName:
    """structlog processor: which process wrote the line."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(
        self, _: Any, __: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("process", self.name)
        return event_dict


class QuietCrons(logging.Filter):
    """arq logs every job's start and end; the crons that tick every few seconds would
    drown the log. Their failures (warnings and errors) still come through."""

    NAMES = ("engine_tick", "perform_outbox_cron", "recover_deliveries")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        return not any(name in message for name in self.NAMES)
