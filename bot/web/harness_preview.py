"""The editor's Preview: what a draft would change before it is published.

For a harness: the template rendered with a sample ticket (so a template error is seen, with
its line, before any run meets it), the source with line numbers, and the diff against the
current version. For a skill: the diff of its files against the current version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.web.diff_view import FileDiff, diff_file, diff_files
from harness_store.errors import HarnessStoreError, RenderError
from harness_store.render import RepositoryVars, TicketVars, render_harness

# What the preview renders with: a ticket and repository like those a run gets. Ticket
# text is not among them: harnesses never see it (bot/engine/untrusted.py).
SAMPLE_TICKET = TicketVars(
    key="octo/hello#42",
    number=42,
    url="https://github.com/octo/hello/issues/42",
    labels=("openase",),
)
SAMPLE_REPOSITORY = RepositoryVars(
    full_name="octo/hello",
    default_branch="main",
    clone_url="https://github.com/octo/hello.git",
)
SAMPLE_ATTEMPT = 2


@dataclass(frozen=True)
class Preview:
    against: int  # the current version the diff is against
    files: list[FileDiff]
    rendered: str | None = None  # a harness rendered with the sample ticket
    problem: str | None = None  # why it could not be rendered
    problem_line: int | None = None
    lines: list[str] = field(default_factory=list)  # the harness source, to number

    @property
    def unchanged(self) -> bool:
        return not self.files


def preview_harness(content: str, name: str, current_version: int, current: str) -> Preview:
    files = [diff_file(name, current, content)] if content != current else []
    try:
        rendered = render_harness(
            content,
            ticket=SAMPLE_TICKET,
            repository=SAMPLE_REPOSITORY,
            attempt=SAMPLE_ATTEMPT,
        )
    except RenderError as error:
        return Preview(
            current_version,
            files,
            problem=error.message,
            problem_line=error.line,
            lines=content.splitlines(),
        )
    except HarnessStoreError as error:
        return Preview(current_version, files, problem=str(error), lines=content.splitlines())
    return Preview(current_version, files, rendered=rendered, lines=content.splitlines())


def preview_skill(
    files: Mapping[str, str], current_version: int, current: Mapping[str, str]
) -> Preview:
    return Preview(current_version, diff_files(current, files))
