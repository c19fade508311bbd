"""One module per agent CLI; `agent_for` picks one by the name a RunSpec gives."""

from __future__ import annotations

from runner.agents.base import Agent
from runner.contract import AgentCli


def agent_for(cli: AgentCli) -> Agent:
    # Imported on demand: a machine pays only for the CLI it runs.
    if cli == "claude_code":
        from runner.agents.claude_code import ClaudeCode

        return ClaudeCode()
    if cli == "codex":
        from runner.agents.codex import Codex

        return Codex()
    if cli == "gemini":
        from runner.agents.gemini import Gemini

        return Gemini()
    from runner.agents.command import Command

    return Command()
