"""A scripted conversation for the fake model server: one `Step` per model turn.

The server picks the step from the request itself (how many model turns its history
already holds), so retries and resumed sessions replay deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ToolCall:
    name: str  # the CLI's own tool name: "Write", "Bash", "shell", "apply_patch", ...
    input: dict[str, Any]  # arguments as the CLI's tool schema wants them
    # For Codex's custom (freeform) tools such as apply_patch: the raw input text.
    raw: str | None = None


@dataclass(frozen=True)
class Step:
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    # Reported usage for this turn.
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass
class Scenario:
    steps: list[Step] = field(default_factory=list)
    # Answer every request with this HTTP status and an error body (an API failure).
    fail_status: int | None = None

    def step(self, turns_so_far: int) -> Step:
        """The step for a request whose history holds `turns_so_far` model turns; past the
        end of the script the model just says it is done."""
        if turns_so_far < len(self.steps):
            return self.steps[turns_so_far]
        return Step(text="Done.")
