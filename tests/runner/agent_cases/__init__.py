"""Each agent module's case for the contract tests (tests/runner/test_agent_contract.py): one
module per CLI with its recorded output and the facts the shared tests check it against."""

from __future__ import annotations

from tests.runner.agent_cases import claude_code, codex, command, gemini
from tests.runner.agent_cases.base import AgentCase, OutputCase, RealCli

AGENTS: tuple[AgentCase, ...] = (claude_code.AGENT, codex.AGENT, gemini.AGENT, command.AGENT)
OUTPUTS: tuple[OutputCase, ...] = (claude_code.OUTPUT, codex.OUTPUT, gemini.OUTPUT)
REAL_CLIS: tuple[RealCli, ...] = (claude_code.REAL, codex.REAL, gemini.REAL)
