"""The control-plane config (OPENASE_CONFIG): the documented example, `${VAR}`, secrets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config.control import (
    ControlConfig,
    default_control_config,
    load_control_config,
    parse_control_config,
)
from bot.config.problems import ConfigProblem
from bot.config.repo import default_repo_config
from bot.errors import ConfigError

# DESIGN.md §5, verbatim.
DESIGN_CONTROL_EXAMPLE = """\
# control-plane config (OPENASE_CONFIG)
providers:
  claude:
    cli: claude_code                  # claude_code | codex | gemini | command
    model: claude-sonnet-4-5
    env: {ANTHROPIC_API_KEY: "${ANTHROPIC_API_KEY}"}   # passed to the agent, nothing else is
    limits: {wall_seconds: 3600, stall_seconds: 300, budget_usd: 5}
  script:
    cli: command
    argv: ["python3", "agent.py", "{prompt_file}"]
defaults:
  provider: claude
linear: {teams: {ENG: {repo: acme/api, workflow: coder}}}
jira: {projects: {PROJ: {repo: acme/api, workflow: coder}}}
"""

SECRET = "sk-ant-not-a-real-key-0123456789"
ENV = {"ANTHROPIC_API_KEY": SECRET, "HOME": "/home/openase"}


def parsed(text: str, environ: dict[str, str] | None = None) -> ControlConfig:
    result = parse_control_config(
        text, file="openase.yml", environ=ENV if environ is None else environ
    )
    assert isinstance(result, ControlConfig), result
    return result


def problems(text: str, environ: dict[str, str] | None = None) -> list[ConfigProblem]:
    result = parse_control_config(
        text, file="openase.yml", environ=ENV if environ is None else environ
    )
    assert isinstance(result, list), result
    return result


def test_the_design_example_validates_as_written() -> None:
    config = parsed(DESIGN_CONTROL_EXAMPLE)
    claude = config.provider("claude")
    assert (claude.cli, claude.model) == ("claude_code", "claude-sonnet-4-5")
    assert claude.env["ANTHROPIC_API_KEY"].get_secret_value() == SECRET
    assert claude.limits.model_dump() == {
        "wall_seconds": 3600,
        "stall_seconds": 300,
        "budget_usd": 5,
        "max_tokens": None,
        "ticket_budget_usd": None,
    }
    script = config.provider("script")
    assert script.argv == ("python3", "agent.py", "{prompt_file}")
    assert config.defaults.provider == "claude"
    assert config.linear.teams["ENG"].repo == "acme/api"
    assert config.linear.teams["ENG"].workflow == "coder"
    assert config.jira.projects["PROJ"].repo == "acme/api"
    agent = claude.agent_config()
    assert agent.cli == "claude_code"
    assert agent.env["ANTHROPIC_API_KEY"].get_secret_value() == SECRET
    # Revealed only in the wire form a runner receives; every other dump masks it.
    wire = agent.model_dump(mode="json", context={"reveal_secrets": True})
    assert wire["env"] == {"ANTHROPIC_API_KEY": SECRET}
    assert agent.model_dump(mode="json")["env"] == {"ANTHROPIC_API_KEY": "**********"}
    assert script.agent_config().argv == ("python3", "agent.py", "{prompt_file}")


def test_secrets_never_show_in_repr_str_or_problems() -> None:
    config = parsed(DESIGN_CONTROL_EXAMPLE)
    for text in (repr(config), str(config), repr(config.provider("claude").agent_config())):
        assert SECRET not in text
    # Literal secrets in a broken file: still never quoted back.
    broken = f"""
providers:
  claude:
    cli: claude_code
    env: {{API_KEY: "{SECRET}", 9BAD: "{SECRET}", N: [1]}}
    model: {{bad: "{SECRET}"}}
  x: {{cli: nope, env: {{TOKEN: "{SECRET}"}}}}
"""
    found = problems(broken)
    assert found
    assert all(SECRET not in str(problem) for problem in found)
    assert {p.key for p in found} >= {"providers.claude.env.9BAD", "providers.claude.env.N"}
    syntax = problems(f'providers:\n  claude: {{env: {{KEY: "{SECRET}"}}, cli: [}}\n')
    assert len(syntax) == 1
    assert SECRET not in str(syntax[0])
    assert syntax[0].line == 2


def test_variables_are_replaced_in_env_values_only() -> None:
    config = parsed(
        """
providers:
  claude:
    cli: claude_code
    model: "${MODEL}"
    env:
      ANTHROPIC_BASE_URL: "https://${HOST}/v1"
      LITERAL: "$${NOT_REPLACED} and $HOME"
      EMPTY: "${EMPTY}"
""",
        {"HOST": "proxy.internal", "MODEL": "opus", "EMPTY": ""},
    )
    claude = config.provider("claude")
    assert claude.model == "${MODEL}"
    env = {key: value.get_secret_value() for key, value in claude.env.items()}
    assert env == {
        "ANTHROPIC_BASE_URL": "https://proxy.internal/v1",
        "LITERAL": "${NOT_REPLACED} and $HOME",
        "EMPTY": "",
    }


def test_a_missing_variable_names_provider_key_and_variable() -> None:
    found = problems(DESIGN_CONTROL_EXAMPLE, environ={})
    assert [(p.key, p.line, p.reason) for p in found] == [
        (
            "providers.claude.env.ANTHROPIC_API_KEY",
            6,
            "provider 'claude' passes ANTHROPIC_API_KEY from the environment variable "
            "ANTHROPIC_API_KEY, which is not set",
        )
    ]
    bad = problems("providers:\n  c: {cli: codex, env: {K: '${not-a-name}'}}\n")
    assert [p.reason for p in bad] == ["provider 'c', K: '${not-a-name}' is not a variable name"]


def test_without_a_file_one_claude_provider_passes_the_api_key_if_set() -> None:
    config = default_control_config({"ANTHROPIC_API_KEY": SECRET, "OTHER": "x"})
    assert list(config.providers) == ["claude"]
    assert config.defaults.provider == "claude"
    claude = config.provider("claude")
    assert claude.cli == "claude_code"
    assert {k: v.get_secret_value() for k, v in claude.env.items()} == {"ANTHROPIC_API_KEY": SECRET}
    assert default_control_config({}).provider("claude").env == {}
    assert load_control_config(None, {}) == default_control_config({})
    assert default_repo_config(config).workflows["coder"].provider == "claude"


def test_defaults_provider_may_be_left_out_with_one_provider() -> None:
    config = parsed("providers: {codex: {cli: codex}}\n")
    assert config.defaults.provider == "codex"
    assert parsed("linear: {teams: {ENG: {repo: acme/api}}}\n").defaults.provider == "claude"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (
            "providers: {a: {cli: codex}, b: {cli: gemini}}\n",
            "defaults",
            "is required",
        ),
        (
            "providers: {a: {cli: codex}}\ndefaults: {provider: b}\n",
            "defaults.provider",
            "no provider 'b' under `providers` (defined: a)",
        ),
        (
            "providers: {a: {cli: cursor}}\n",
            "providers.a.cli",
            "must be 'claude_code', 'codex', 'gemini' or 'command', got 'cursor'",
        ),
        (
            "providers: {a: {cli: command}}\n",
            "providers.a.argv",
            "is required for cli 'command': the program and its arguments, for example "
            "[python3, agent.py, '{prompt_file}']",
        ),
        (
            "providers: {a: {cli: codex, argv: [codex]}}\n",
            "providers.a.argv",
            "only a cli 'command' provider takes argv, this one is 'codex'",
        ),
        (
            "providers: {a: {cli: command, argv: [run, '{promt}']}}\n",
            "providers.a.argv",
            "argv uses unknown placeholder {promt}; known: {prompt}, {prompt_file}, "
            "{instructions_file}, {workspace}, {ticket}, {model}",
        ),
        (
            "providers: {a: {cli: codex, limits: {wall_seconds: forever}}}\n",
            "providers.a.limits.wall_seconds",
            "must be a number of seconds, got 'forever'",
        ),
        (
            "providers: {a: {cli: codex, machine_labels: ['has space']}}\n",
            "providers.a.machine_labels[0]",
            "machine labels are letters, digits and . _ : = / - (for example 'gpu' or "
            "'os=linux'), at most 64 characters; got 'has space'",
        ),
        (
            "providers: {A_B: {cli: codex}, b: {cli: codex}}\ndefaults: {provider: b}\n",
            "providers.A_B",
            "bad name: provider names use lowercase letters, digits and single hyphens, at most "
            "64 characters (for example 'run-tests'); got 'A_B'",
        ),
        (
            "providers: {}\ndefaults: {provider: a}\n",
            "providers",
            "needs at least 1 item(s)",
        ),
        (
            "linear: {teams: {ENG: {repo: api}}}\n",
            "linear.teams.ENG.repo",
            "must be a repository as owner/name, got 'api'",
        ),
        (
            "jira: {projects: {PROJ: {repo: acme/api, workflow: Coder}}}\n",
            "jira.projects.PROJ.workflow",
            "workflow names use lowercase letters, digits and single hyphens, at most 64 "
            "characters (for example 'run-tests'); got 'Coder'",
        ),
        (
            "jira: {projects: {PROJ: {repo: acme/api, issue_type: ''}}}\n",
            "jira.projects.PROJ.issue_type",
            "must not be empty",
        ),
        (
            "linear: {teams: {ENG: {repo: acme/api, issue_type: Task}}}\n",
            "linear.teams.ENG.issue_type",
            "is not a known key (known keys: repo, workflow, labels, projects, components, "
            "schedules)",
        ),
        (
            "machines: {labels: [gpu]}\n",
            "machines.labels",
            "is not a known key (did you mean 'default_labels'? known keys: default_labels)",
        ),
        (
            "defaults: {workflow: {max_attempts: 0}}\n",
            "defaults.workflow.max_attempts",
            "must be at least 1, got 0",
        ),
        (
            "defaults: {workflow: {trigger_labels: [go]}}\n",
            "defaults.workflow.trigger_labels",
            "has no default: set it per workflow in .github/openase.yml",
        ),
        (
            "defaults: {workflow: {provider: nobody}}\n",
            "defaults.workflow.provider",
            "no provider 'nobody' in the control-plane config (providers: claude)",
        ),
        ("[1, 2]\n", "", "must be a mapping with `providers` and `defaults`"),
    ],
)
def test_invalid_control_configs_name_the_key(text: str, key: str, reason: str) -> None:
    assert [(p.key, p.reason) for p in problems(text)] == [(key, reason)]


def test_load_reads_the_file_and_refuses_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "openase.yml"
    path.write_text(DESIGN_CONTROL_EXAMPLE)
    assert load_control_config(path, ENV) == parsed(DESIGN_CONTROL_EXAMPLE)
    path.write_text(
        "providers:\n  claude: {cli: claude_code, env: {K: '${NOPE}'}}\n  x: {}\n"
        "defaults: {provider: claude}\n"
    )
    with pytest.raises(ConfigError) as refused:
        load_control_config(path, ENV)
    assert str(refused.value) == (
        "invalid control-plane config (OPENASE_CONFIG):\n"
        f"  {path}, line 2: providers.claude.env.K: provider 'claude' passes K from the "
        "environment variable NOPE, which is not set\n"
        f"  {path}, line 3: providers.x.cli: is required"
    )
    with pytest.raises(ConfigError, match=r"does-not-exist\.yml: No such file"):
        load_control_config(tmp_path / "does-not-exist.yml", ENV)
    path.write_bytes(b"providers: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_control_config(path, ENV)
    path.write_text("providers: [\n")
    with pytest.raises(ConfigError, match=r"line 2: is not valid YAML"):
        load_control_config(path, ENV)


def test_machine_labels_combine_workflow_and_provider_else_defaults() -> None:
    config = parsed(
        """
providers:
  claude: {cli: claude_code, machine_labels: [claude]}
  codex: {cli: codex}
defaults: {provider: claude}
machines: {default_labels: [general]}
"""
    )
    assert config.machine_labels("claude", ("gpu",)) == {"claude", "gpu"}
    assert config.machine_labels("codex", ("gpu",)) == {"gpu"}
    assert config.machine_labels("codex") == {"general"}
