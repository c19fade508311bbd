"""Issue #17, item 4: the control config's `prices:` over the shipped price table, what each
provider's runs are sent, and the ticket budget with the control config's defaults and caps."""

from __future__ import annotations

import pytest

from bot.config.control import ControlConfig, parse_control_config, ticket_budget
from bot.config.problems import ConfigProblem
from bot.config.repo import RepoConfig, default_repo_config, parse_repo_config
from runner.contract import ModelPrice
from runner.pricing import shipped_prices

PROVIDERS = """\
providers:
  claude: {cli: claude_code, model: claude-sonnet-4-5}
  codex: {cli: codex, model: gpt-5.5}
  gemini: {cli: gemini}
  script: {cli: command, model: o3, argv: [python3, agent.py]}
defaults: {provider: claude}
"""


def parsed(text: str) -> ControlConfig:
    result = parse_control_config(text, file="control.yml", environ={})
    assert isinstance(result, ControlConfig), result
    return result


def problems(text: str) -> list[str]:
    result = parse_control_config(text, file="control.yml", environ={})
    assert isinstance(result, list), result
    return [str(problem) for problem in result]


def test_each_provider_is_sent_its_vendors_shipped_prices() -> None:
    config = parsed(PROVIDERS)
    claude = config.provider("claude").agent_config().prices
    assert claude == shipped_prices()["anthropic"]
    assert config.provider("codex").agent_config().prices == shipped_prices()["openai"]
    assert config.provider("gemini").agent_config().prices == shipped_prices()["google"]
    # A `command` agent gets the row of the model it names, whoever sells it.
    assert config.provider("script").agent_config().prices == {
        "o3": shipped_prices()["openai"]["o3"]
    }


def test_an_override_changes_a_shipped_price_and_a_new_model_is_added() -> None:
    config = parsed(
        PROVIDERS
        + """\
prices:
  claude-sonnet-4-5: {input: 2.5}              # a negotiated rate: the rest as shipped
  claude-sonnet-4-5-20250929: {output: 12}     # a dated id: over the row it belongs to
  acme-coder-1: {input: 1, output: 2, cache_read: 0.1, cache_write: 1.25}
"""
    )
    prices = config.provider("claude").agent_config().prices
    assert prices["claude-sonnet-4-5"] == ModelPrice(
        input=2.5, output=15.0, cache_read=0.3, cache_write=3.75
    )
    assert prices["claude-sonnet-4-5-20250929"] == ModelPrice(
        input=3.0, output=12.0, cache_read=0.3, cache_write=3.75
    )
    assert prices["acme-coder-1"] == ModelPrice(
        input=1.0, output=2.0, cache_read=0.1, cache_write=1.25
    )
    # Overrides reach every provider: a model behind a compatible API is priced too.
    assert "acme-coder-1" in config.provider("codex").agent_config().prices


def test_a_spec_stored_without_secrets_keeps_its_prices() -> None:
    agent = parsed(PROVIDERS).provider("claude").agent_config()
    stored = agent.model_dump(mode="json")
    assert stored["prices"]["claude-haiku-4-5"] == {
        "input": 1.0,
        "output": 5.0,
        "cache_read": 0.1,
        "cache_write": 1.25,
    }


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        (
            "acme-coder-1: {input: 1, output: 2}",
            "control.yml, line 8: prices.acme-coder-1: 'acme-coder-1' is not in the shipped "
            "price table, so it needs all of input, output, cache_read, cache_write (USD per "
            "million tokens); missing: cache_read, cache_write",
        ),
        (
            "claude-sonnet-4-5: {input: -1}",
            "control.yml, line 8: prices.claude-sonnet-4-5.input: must be at least 0, got -1",
        ),
        (
            "claude-sonnet-4-5: {input: cheap}",
            "control.yml, line 8: prices.claude-sonnet-4-5.input: must be a number, got 'cheap'",
        ),
        (
            "claude-sonnet-4-5: {inputs: 1}",
            "control.yml, line 8: prices.claude-sonnet-4-5.inputs: is not a known key (did you "
            "mean 'input'?",
        ),
        ("'-bad': {input: 1}", "control.yml, line 8: prices.-bad: bad name"),
    ],
)
def test_a_bad_price_row_is_one_precise_problem(rows: str, problem: str) -> None:
    found = problems(PROVIDERS + "prices:\n  " + rows + "\n")
    assert len(found) == 1, found
    assert found[0].startswith(problem), found[0]


CONTROL = """\
providers:
  claude: {cli: claude_code, limits: {ticket_budget_usd: 20}}
  cheap: {cli: claude_code}
defaults:
  provider: claude
  workflow: {limits: {ticket_budget_usd: 8}}
"""


def repo(text: str, control: ControlConfig) -> RepoConfig:
    result = parse_repo_config(text, control)
    assert isinstance(result, RepoConfig), result
    return result


def test_the_ticket_budget_is_the_workflows_within_the_providers_cap() -> None:
    control = parsed(CONTROL)
    default = default_repo_config(control).workflows["coder"]
    assert ticket_budget(default, control.provider("claude")) == 8  # the control's default
    config = repo(
        "workflows:\n"
        "  coder: {limits: {ticket_budget_usd: 50}}\n"
        "  lean: {trigger_labels: [lean], provider: cheap, limits: {ticket_budget_usd: 3}}\n",
        control,
    )
    assert ticket_budget(config.workflows["coder"], control.provider("claude")) == 20  # capped
    assert ticket_budget(config.workflows["lean"], control.provider("cheap")) == 3
    open_ended = parsed("providers: {claude: {cli: claude_code}}\n")
    plain = default_repo_config(open_ended).workflows["coder"]
    assert ticket_budget(plain, open_ended.provider("claude")) is None


def test_a_bad_ticket_budget_is_a_problem_naming_the_key() -> None:
    result = parse_repo_config(
        "workflows:\n  coder:\n    limits: {ticket_budget_usd: -5}\n", parsed(CONTROL)
    )
    assert isinstance(result, list)
    assert [problem.key for problem in result] == ["workflows.coder.limits.ticket_budget_usd"]
    assert isinstance(result[0], ConfigProblem)
