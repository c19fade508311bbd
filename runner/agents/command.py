"""Any program as the agent: an argv template, plain text output.

The template's elements may hold `{prompt}`, `{prompt_file}`, `{instructions_file}`,
`{workspace}`, `{ticket}` and `{model}`; `{{` and `}}` are literal braces. It runs without a
shell, so a prompt is one argument whatever it contains. The prompt also arrives on stdin,
and `OPENASE_PROMPT_FILE` / `OPENASE_INSTRUCTIONS_FILE` name the two files, so a program
can take its task whichever way suits it.

The program is argv[0] of the template; `AgentConfig.binary`, when set, is put in front of
the template (so the template can be arguments only) and the `binary` the runner resolves
is not used. Skills go to `.agents/skills/`, the cross-tool folder, since no CLI owns this
agent. Every stdout line is a LOG event; the last lines are the run's summary.
"""

from __future__ import annotations

import string
from collections import deque
from collections.abc import Mapping, Sequence

from runner.agents.base import (
    AgentRun,
    Invocation,
    Outcome,
    StreamState,
    make_home,
    prompt_on_stdin,
    stderr_end,
)
from runner.contract import AgentCli, AgentEvent, EventKind, RunStatus
from runner.pricing import Meter

SUMMARY_CHARS = 2000
PLACEHOLDERS = ("prompt", "prompt_file", "instructions_file", "workspace", "ticket", "model")


class Command:
    cli: AgentCli = "command"
    default_binary = ""  # none: the program is the template's argv[0]
    skills_dir = ".agents/skills"

    def invocation(self, run: AgentRun, binary: str) -> Invocation:
        """Expand the template (a ValueError names a bad placeholder), then write the prompt
        and instructions files next to each other."""
        config = run.config
        template = [*([config.binary] if config.binary else []), *config.argv]
        if not template:
            raise ValueError("command agent needs argv")
        instructions_file = run.prompt_file.with_name("instructions.md")
        argv = expand_argv(
            [*template, *config.extra_args],
            {
                "prompt": run.prompt,
                "prompt_file": str(run.prompt_file),
                "instructions_file": str(instructions_file),
                "workspace": str(run.workspace),
                "ticket": run.ticket_key,
                "model": config.model,
            },
        )
        run.prompt_file.parent.mkdir(parents=True, exist_ok=True)
        run.prompt_file.write_text(run.prompt)
        instructions_file.write_text(run.instructions)
        make_home(run)
        extra = {
            "OPENASE_PROMPT_FILE": str(run.prompt_file),
            "OPENASE_INSTRUCTIONS_FILE": str(instructions_file),
            "OPENASE_TICKET": run.ticket_key,
            "OPENASE_WORKSPACE": str(run.workspace),
        }
        return prompt_on_stdin(run, argv, extra)

    def parser(self, meter: Meter | None = None) -> CommandParser:
        return CommandParser()  # plain text: no usage to price


def expand_argv(template: Sequence[str], values: Mapping[str, str | None]) -> list[str]:
    """Fill each element's `{name}` placeholders; unknown names, format specs, conversions
    and values that are None (an unset model) are errors naming the placeholder."""
    formatter = string.Formatter()
    argv = []
    for element in template:
        try:
            parts = list(formatter.parse(element))
        except ValueError as error:
            raise ValueError(
                f"argv element {element!r}: {error} (write literal braces as '{{{{' and '}}}}')"
            ) from None
        pieces = []
        for literal, name, spec, conversion in parts:
            pieces.append(literal)
            if name is None:
                continue
            if name not in values:
                known = ", ".join(f"{{{key}}}" for key in values)
                raise ValueError(
                    f"unknown placeholder {{{name}}} in argv element {element!r}; known: {known}"
                )
            if spec or conversion:
                raise ValueError(
                    f"placeholder {{{name}}} in argv element {element!r} takes no format "
                    "spec or conversion"
                )
            value = values[name]
            if value is None:
                raise ValueError(f"argv uses {{{name}}} but the run has no {name} set")
            pieces.append(value)
        argv.append("".join(pieces))
    return argv


class CommandParser:
    """Plain text: each line is logged; the last non-empty lines make the summary."""

    def __init__(self) -> None:
        self.state = StreamState()
        self._tail: deque[str] = deque()
        self._tail_size = 0

    def feed(self, line: str) -> list[AgentEvent]:
        if line.strip():
            self._tail.append(line)
            self._tail_size += len(line) + 1
            while self._tail_size > SUMMARY_CHARS and len(self._tail) > 1:
                self._tail_size -= len(self._tail.popleft()) + 1
            self.state.final_text = "\n".join(self._tail)[-SUMMARY_CHARS:]
        return [AgentEvent(kind=EventKind.LOG, text=line)]

    def finish(self, exit_code: int, stderr_tail: str) -> Outcome:
        summary = self.state.final_text
        if exit_code == 0:
            return Outcome(RunStatus.SUCCEEDED, summary=summary)
        if exit_code < 0:
            error = f"killed by signal {-exit_code}"
        else:
            error = f"exited with status {exit_code}"
        stderr = stderr_end(stderr_tail)
        if stderr:
            error += f"; stderr ends: {stderr}"
        return Outcome(
            RunStatus.AGENT_ERROR, summary=summary, error=error, error_class="exit_status"
        )
