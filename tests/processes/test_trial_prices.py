"""`openase try --budget-usd` holds in dollars: its spec carries the shipped prices of the
agent CLI's vendor (a command agent: those of the model it names), as a ticket's run does."""

from __future__ import annotations

from pathlib import Path

from bot.processes.trial import TrialOptions, build_spec
from runner.pricing import shipped_prices
from tests.support.git_repos import git


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
    return repo


def test_a_try_is_sent_the_shipped_prices_of_its_cli(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    claude = build_spec(TrialOptions(repo=repo, agent="claude_code", task="x", budget_usd=1.0))
    assert claude.agent.prices == shipped_prices()["anthropic"]
    assert claude.limits.budget_usd == 1.0
    codex = build_spec(TrialOptions(repo=repo, agent="codex", task="x", model="gpt-5.5"))
    assert codex.agent.prices == shipped_prices()["openai"]
    script = build_spec(
        TrialOptions(repo=repo, agent="command", task="x", model="gemini-2.5-flash", argv=["x"])
    )
    assert script.agent.prices == {
        "gemini-2.5-flash": shipped_prices()["google"]["gemini-2.5-flash"]
    }
