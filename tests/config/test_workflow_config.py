"""`.github/openase.yml`: the documented example, defaults, problems users can act on, relays."""

from __future__ import annotations

import pytest

from bot.config.control import ControlConfig, parse_control_config, run_limits, sandbox_policy
from bot.config.problems import ConfigProblem, explain
from bot.config.repo import RepoConfig, default_repo_config, parse_repo_config, relay, stage_for
from bot.config.workflow import HarnessPin, Workflow
from runner.contract import HookSpec, SandboxPolicy

# DESIGN.md §5, verbatim.
DESIGN_REPO_EXAMPLE = """\
# .github/openase.yml in a repository (read from the default branch)
workflows:
  coder:
    trigger_labels: [openase]         # also the default when the file is absent
    harness: coder                    # a harness name in the harness store (optionally coder@3)
    skills: [commit, create-pr]
    provider: claude                  # a provider of the control-plane config
    hooks:
      on_complete:
        - {name: tests, run: "pytest -q", timeout: 900}
        - {name: lint, run: "ruff check .", on_failure: warn}
    approval: required                # or: none
    merge_method: squash
    max_attempts: 3
"""

CONTROL = """\
providers:
  claude: {cli: claude_code, limits: {wall_seconds: 3600, budget_usd: 5}}
  codex: {cli: codex, model: gpt-5-codex}
  script: {cli: command, argv: [python3, agent.py, "{prompt_file}"]}
defaults:
  provider: claude
"""


def control_config(text: str = CONTROL) -> ControlConfig:
    result = parse_control_config(text, file="control.yml", environ={})
    assert isinstance(result, ControlConfig), result
    return result


@pytest.fixture(scope="module")
def control() -> ControlConfig:
    return control_config()


def parsed(text: str, control: ControlConfig) -> RepoConfig:
    result = parse_repo_config(text, control)
    assert isinstance(result, RepoConfig), result
    return result


def problems(text: str, control: ControlConfig) -> list[ConfigProblem]:
    result = parse_repo_config(text, control)
    assert isinstance(result, list), result
    return result


# --- valid configs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "policy"),
    [
        ("", SandboxPolicy(allow=("pypi.org",))),
        ("sandbox: off\n", SandboxPolicy(enabled=False, allow=("pypi.org",))),
        ("sandbox: on\nnetwork: open\n", SandboxPolicy(network="open")),
        (
            "network: {allow: [registry.npmjs.org, '*.pypi.org', 'ghcr.io:443', pypi.org]}\n",
            SandboxPolicy(allow=("pypi.org", "registry.npmjs.org", "*.pypi.org", "ghcr.io:443")),
        ),
    ],
)
def test_a_workflow_is_confined_unless_it_says_otherwise(
    fields: str, policy: SandboxPolicy
) -> None:
    with_allow = CONTROL.replace(
        "claude: {cli: claude_code,", "claude: {cli: claude_code, network: {allow: [pypi.org]},"
    )
    control = control_config(with_allow)
    indented = "".join(f"    {line}\n" for line in fields.splitlines())
    config = parsed(f"workflows:\n  coder:\n{indented}", control)
    workflow = config.workflows["coder"]
    provider = control.providers[workflow.provider]
    assert sandbox_policy(provider, workflow) == policy


def test_the_design_example_validates_as_written(control: ControlConfig) -> None:
    config = parsed(DESIGN_REPO_EXAMPLE, control)
    (coder,) = config.workflows.values()
    assert coder.name == "coder"
    assert coder.trigger_labels == ("openase",)
    assert (coder.pickup, coder.finish) == ("todo", "in_review")
    assert coder.harness == HarnessPin(name="coder", version=None)
    assert coder.skills == ("commit", "create-pr")
    assert coder.provider == "claude"
    assert coder.hooks.on_complete == (
        HookSpec(name="tests", run="pytest -q", timeout=900),
        HookSpec(name="lint", run="ruff check .", on_failure="warn"),
    )
    assert coder.approval_required
    assert coder.merge_method == "squash"
    assert coder.max_attempts == 3


def test_a_repository_without_the_file_gets_one_coder_workflow(control: ControlConfig) -> None:
    for config in (parse_repo_config(None, control), default_repo_config(control)):
        assert isinstance(config, RepoConfig)
        (coder,) = config.workflows.values()
        assert coder == Workflow(
            name="coder",
            trigger_labels=("openase",),
            pickup="todo",
            finish="in_review",
            harness=HarnessPin(name="coder"),
            skills=("run-tests", "commit-message"),
            provider="claude",
            approval="required",
            merge_method="squash",
            max_attempts=3,
        )
        assert coder.hooks.on_complete == ()
        assert coder.limits.backoff_seconds == 60


@pytest.mark.parametrize("text", ["", "# only a comment\n", "state_labels: {}\n"])
def test_a_file_without_workflows_means_the_default_workflow(
    text: str, control: ControlConfig
) -> None:
    assert parsed(text, control).workflows == default_repo_config(control).workflows


def test_trigger_labels_default_to_the_workflow_name(control: ControlConfig) -> None:
    config = parsed("workflows: {coder: {}, docs: {harness: docs}}", control)
    assert config.workflows["coder"].trigger_labels == ("openase",)
    assert config.workflows["docs"].trigger_labels == ("openase:docs",)
    assert config.trigger_labels == {"openase", "openase:docs"}


def test_every_field_parses(control: ControlConfig) -> None:
    config = parsed(
        """
workflows:
  fast:
    trigger_labels: [quick, "openase:fast"]
    pickup: backlog
    finish: in-review
    harness: coder@3
    skills: []
    provider: script
    hooks:
      on_claim: [{name: claim, run: "true"}]
      on_error: [{name: report, run: "echo failed", timeout: 5.5, on_failure: ignore}]
    approval: none
    merge_method: rebase
    max_attempts: 1
    limits:
      concurrency: {workflow: 2, repo: 3, machine: 1}
      budget_usd: 0.5
      wall_seconds: 600
      stall_seconds: 60
      max_tokens: 100000
      backoff_seconds: 5
    machine_labels: [gpu, "os=linux"]
commands:
  approve: {users: [octocat], teams: [acme/maintainers]}
""",
        control,
    )
    fast = config.workflows["fast"]
    assert fast.trigger_labels == ("quick", "openase:fast")
    assert (fast.pickup, fast.finish) == ("backlog", "in_review")  # in-review as labels spell it
    assert fast.harness == HarnessPin(name="coder", version=3)
    assert str(fast.harness) == "coder@3"
    assert fast.skills == ()
    assert fast.hooks.on_error == (
        HookSpec(name="report", run="echo failed", timeout=5.5, on_failure="ignore"),
    )
    assert not fast.approval_required
    assert fast.merge_method == "rebase"
    assert fast.limits.concurrency.model_dump() == {"workflow": 2, "repo": 3, "machine": 1}
    assert fast.limits.budget_usd == 0.5
    assert fast.limits.backoff_seconds == 5
    assert fast.machine_labels == ("gpu", "os=linux")
    assert config.commands["approve"].users == ("octocat",)
    assert config.commands["approve"].teams == ("acme/maintainers",)
    assert fast.model_dump()["harness"] == "coder@3"


def test_a_config_survives_a_json_round_trip(control: ControlConfig) -> None:
    """The engine may store the config a ticket ran with; it reads back the same."""
    config = parsed(FOUR_STAGES + "state_labels: {done: shipped}\n", control)
    assert RepoConfig.model_validate_json(config.model_dump_json()) == config


def test_control_plane_defaults_fill_what_a_workflow_leaves_out() -> None:
    control = control_config(
        CONTROL
        + """\
  workflow:
    max_attempts: 5
    approval: none
    harness: coder@2
    limits: {backoff_seconds: 10, concurrency: {repo: 4}}
    hooks: {on_start: [{name: setup, run: make}]}
"""
    )
    default = default_repo_config(control).workflows["coder"]
    assert (default.max_attempts, default.approval, str(default.harness)) == (5, "none", "coder@2")
    config = parsed(
        """
workflows:
  coder:
    approval: required
    limits: {concurrency: {workflow: 1}}
""",
        control,
    )
    coder = config.workflows["coder"]
    assert coder.approval_required  # the repo wins
    assert coder.max_attempts == 5  # the control plane's default
    # Mappings merge key by key.
    assert coder.limits.backoff_seconds == 10
    assert coder.limits.concurrency.model_dump() == {"workflow": 1, "repo": 4, "machine": None}
    assert [hook.name for hook in coder.hooks.on_start] == ["setup"]


def test_state_labels_override_the_default_names(control: ControlConfig) -> None:
    config = parsed("state_labels: {in_review: 'needs review', done: shipped}", control)
    assert config.label_for("todo") == "openase/todo"
    assert config.label_for("in_progress") == "openase/in-progress"
    assert config.label_for("in_review") == "needs review"
    assert config.state_for_label("Needs Review") == "in_review"
    assert config.state_for_label("openase/failed") == "failed"
    assert config.state_for_label("openase") is None
    assert config.status_labels == {
        "backlog": "openase/backlog",
        "todo": "openase/todo",
        "in_progress": "openase/in-progress",
        "in_review": "needs review",
        "merging": "openase/merging",
        "done": "shipped",
        "canceled": "openase/canceled",
        "failed": "openase/failed",
    }


def test_run_limits_take_the_stricter_of_workflow_and_provider(control: ControlConfig) -> None:
    config = parsed(
        "workflows: {coder: {limits: {wall_seconds: 7200, budget_usd: 2, stall_seconds: 30}}}",
        control,
    )
    limits = run_limits(config.workflows["coder"], control.provider("claude"))
    assert limits.wall_seconds == 3600  # the provider caps the repository
    assert limits.budget_usd == 2
    assert limits.stall_seconds == 30
    assert limits.max_tokens is None
    plain = run_limits(default_repo_config(control).workflows["coder"], control.provider("codex"))
    assert (plain.wall_seconds, plain.stall_seconds, plain.budget_usd) == (3600, 300, None)


# --- relays -----------------------------------------------------------------------------

TWO_STAGES = """
workflows:
  design:
    trigger_labels: [openase]
    harness: docs
    provider: codex
    finish: build
  build:
    pickup: build
    harness: coder
    provider: claude
    hooks: {on_complete: [{name: tests, run: pytest}]}
"""

FOUR_STAGES = """
workflows:
  design: {trigger_labels: ["openase:relay"], finish: backend, harness: docs}
  backend: {pickup: backend, finish: tests}
  tests: {pickup: tests, finish: review, harness: tester}
  review: {pickup: review, harness: reviewer, provider: codex}
  coder: {}
"""


def test_a_two_stage_relay_hands_the_ticket_over(control: ControlConfig) -> None:
    config = parsed(TWO_STAGES, control)
    labels = {"openase", "bug"}
    first = stage_for(config, "todo", labels)
    assert first is not None
    assert (first.name, first.provider, str(first.harness)) == ("design", "codex", "docs")
    # The first stage finishes in `build`, which the second picks up: no label needed.
    second = stage_for(config, first.finish, labels)
    assert second is not None
    assert (second.name, second.provider, str(second.harness)) == ("build", "claude", "coder")
    assert [hook.name for hook in second.hooks.on_complete] == ["tests"]
    assert second.finish == "in_review"
    assert stage_for(config, second.finish, labels) is None
    assert relay(config) == [["design", "build"]]
    assert config.label_for("build") == "openase/build"
    assert config.states[-1] == "build"


def test_a_four_stage_relay_and_a_plain_workflow_side_by_side(control: ControlConfig) -> None:
    config = parsed(FOUR_STAGES, control)
    assert relay(config) == [["design", "backend", "tests", "review"], ["coder"]]
    walked, state, labels = [], "todo", ["openase:relay"]
    while (stage := stage_for(config, state, labels)) is not None:
        walked.append(stage.name)
        state = stage.finish
    assert walked == ["design", "backend", "tests", "review"]
    assert state == "in_review"
    coder = stage_for(config, "todo", ["OpenASE"])  # GitHub label names ignore case
    assert coder is not None
    assert coder.name == "coder"


def test_stage_for_needs_a_trigger_label_to_enter(control: ControlConfig) -> None:
    config = parsed(FOUR_STAGES, control)
    assert stage_for(config, "todo", []) is None
    assert stage_for(config, "todo", ["openase/todo"]) is None
    assert stage_for(config, "in_review", ["openase"]) is None
    # Both trigger labels on one ticket: the first workflow declared wins.
    both = stage_for(config, "todo", ["openase", "openase:relay"])
    assert both is not None
    assert both.name == "design"


def test_stages_sharing_a_pickup_state_are_told_apart_by_label(control: ControlConfig) -> None:
    config = parsed(
        """
workflows:
  plan: {trigger_labels: [openase], finish: build}
  web: {pickup: build, trigger_labels: [web]}
  api: {pickup: build, trigger_labels: [api]}
""",
        control,
    )
    web = stage_for(config, "build", {"openase", "web"})
    api = stage_for(config, "build", {"openase", "api"})
    assert web is not None
    assert api is not None
    assert (web.name, api.name) == ("web", "api")
    assert stage_for(config, "build", {"openase"}) is None  # two candidates, no label
    assert relay(config) == [["plan", "web"], ["plan", "api"]]


# --- problems ---------------------------------------------------------------------------

F = ".github/openase.yml"

INVALID = [
    pytest.param(
        "workflows:\n  coder:\n    hooks:\n      on_complete:\n"
        "        - {name: tests, run: pytest, timeout: ten}\n",
        "workflows.coder.hooks.on_complete[0].timeout",
        5,
        "must be a number of seconds, got 'ten'",
        id="timeout-not-a-number",
    ),
    pytest.param(
        "workflows:\n  coder:\n    max_attempts: 0\n",
        "workflows.coder.max_attempts",
        3,
        "must be at least 1, got 0",
        id="zero-attempts",
    ),
    pytest.param(
        "workflows:\n  coder:\n    max_attempts: three\n",
        "workflows.coder.max_attempts",
        3,
        "must be a whole number, got 'three'",
        id="attempts-not-a-number",
    ),
    pytest.param(
        "workflows:\n  coder:\n    approval: maybe\n",
        "workflows.coder.approval",
        3,
        "must be 'required' or 'none', got 'maybe'",
        id="approval",
    ),
    pytest.param(
        "workflows:\n  coder:\n    merge_method: fast-forward\n",
        "workflows.coder.merge_method",
        3,
        "must be 'merge', 'squash' or 'rebase', got 'fast-forward'",
        id="merge-method",
    ),
    pytest.param(
        "workflows:\n  coder:\n    aproval: none\n",
        "workflows.coder.aproval",
        3,
        "is not a known key (did you mean 'approval'? known keys: trigger_labels, pickup, "
        "finish, harness, skills, provider, hooks, approval, merge_method, max_attempts, "
        "limits, machine_labels, sandbox, network)",
        id="typo-key",
    ),
    pytest.param(
        "workflows:\n  coder:\n    hooks: {on_complete: [{name: t, run: x, on_failure: stop}]}\n",
        "workflows.coder.hooks.on_complete[0].on_failure",
        3,
        "must be 'block', 'warn' or 'ignore', got 'stop'",
        id="hook-on-failure",
    ),
    pytest.param(
        "workflows:\n  coder:\n    hooks:\n      after_merge: []\n",
        "workflows.coder.hooks.after_merge",
        4,
        "is not a known key (known keys: on_claim, on_start, on_complete, on_done, "
        "on_error, on_cancel)",
        id="hook-phase",
    ),
    pytest.param(
        "workflows:\n  coder:\n    hooks:\n      on_start:\n        - {name: setup}\n",
        "workflows.coder.hooks.on_start[0].run",
        5,
        "is required",
        id="hook-without-run",
    ),
    pytest.param(
        "workflows:\n  coder:\n    harness: coder@latest\n",
        "workflows.coder.harness",
        3,
        "a harness version is a whole number from 1 (for example coder@3); got 'coder@latest'",
        id="harness-version",
    ),
    pytest.param(
        "workflows:\n  coder:\n    harness: My_Harness\n",
        "workflows.coder.harness",
        3,
        "harness names use lowercase letters, digits and single hyphens, optionally with "
        "@VERSION (for example 'coder' or 'coder@3'); got 'My_Harness'",
        id="harness-name",
    ),
    pytest.param(
        "workflows:\n  coder:\n    skills: run-tests\n",
        "workflows.coder.skills",
        3,
        "must be a list, got 'run-tests'",
        id="skills-not-a-list",
    ),
    pytest.param(
        "workflows:\n  coder:\n    skills: [run--tests]\n",
        "workflows.coder.skills[0]",
        3,
        "skill names use lowercase letters, digits and single hyphens, at most 64 characters "
        "(for example 'run-tests'); got 'run--tests'",
        id="skill-name",
    ),
    pytest.param(
        "workflows:\n  coder:\n    provider: gpt\n",
        "workflows.coder.provider",
        3,
        "no provider 'gpt' in the control-plane config (providers: claude, codex, script)",
        id="unknown-provider",
    ),
    pytest.param(
        "workflows:\n  coder:\n    limits:\n      wall_seconds: 1h\n",
        "workflows.coder.limits.wall_seconds",
        4,
        "must be a number of seconds, got '1h'",
        id="wall-seconds",
    ),
    pytest.param(
        "workflows:\n  coder:\n    limits: {budget_usd: -1}\n",
        "workflows.coder.limits.budget_usd",
        3,
        "must be more than 0, got -1",
        id="budget",
    ),
    pytest.param(
        "workflows:\n  coder:\n    limits: {concurrency: {repo: 0}}\n",
        "workflows.coder.limits.concurrency.repo",
        3,
        "must be at least 1, got 0",
        id="concurrency",
    ),
    pytest.param(
        "workflows:\n  coder:\n    trigger_labels: []\n",
        "workflows.coder.trigger_labels",
        3,
        "needs at least 1 item(s)",
        id="no-trigger-labels",
    ),
    pytest.param(
        "workflows:\n  coder:\n    trigger_labels: [openase/todo]\n",
        "workflows.coder.trigger_labels",
        3,
        "'openase/todo': labels starting with 'openase/' are the status labels the bot sets; "
        "use for example 'openase' or 'openase:docs'",
        id="trigger-is-a-status-label",
    ),
    pytest.param(
        "workflows:\n  coder:\n    pickup: in_review\n",
        "workflows.coder.pickup",
        3,
        "a workflow picks up tickets in 'todo', 'backlog' or a stage of your own (like "
        "'backend'); the engine alone moves tickets into 'in_review'",
        id="pickup-engine-state",
    ),
    pytest.param(
        "workflows:\n  coder:\n    finish: merging\n",
        "workflows.coder.finish",
        3,
        "a workflow finishes in 'in_review' or in the stage the next workflow picks up (like "
        "'tests'); the engine alone moves tickets into 'merging'",
        id="finish-engine-state",
    ),
    pytest.param(
        "workflows:\n  coder:\n    finish: todo\n",
        "workflows.coder.finish",
        3,
        "a workflow cannot finish in 'todo': that would start the ticket over",
        id="finish-todo",
    ),
    pytest.param(
        "workflows:\n  coder:\n    pickup: build\n    finish: build\n",
        "workflows.coder.finish",
        4,
        "equals pickup ('build'): this workflow would pick the ticket up again forever",
        id="finish-equals-pickup",
    ),
    pytest.param(
        "workflows:\n  coder:\n    finish: Build Step\n",
        "workflows.coder.finish",
        3,
        "state names are lowercase letters, digits and underscores, starting with a letter "
        "(for example 'todo' or 'backend'); got 'Build Step'",
        id="state-name",
    ),
    pytest.param(
        "workflows:\n  coder:\n    finish: build\n",
        "workflows.coder.finish",
        3,
        "no workflow picks up 'build': the ticket would wait there forever (finish in "
        "'in_review', or add a workflow with pickup: build)",
        id="finish-nobody-picks-up",
    ),
    pytest.param(
        "workflows:\n  Coder: {}\n",
        "workflows.Coder",
        2,
        "bad name: workflow names use lowercase letters, digits and single hyphens, at most "
        "64 characters (for example 'run-tests'); got 'Coder'",
        id="workflow-name",
    ),
    pytest.param(
        "workflows:\n  coder:\n    name: builder\n",
        "workflows.coder.name",
        3,
        "is not a known key: a workflow's name is its key under `workflows`",
        id="name-key",
    ),
    pytest.param(
        "workflows: {}\n",
        "workflows",
        1,
        "needs at least 1 item(s)",
        id="no-workflows",
    ),
    pytest.param(
        "workflows:\n  - coder\n",
        "workflows",
        1,
        "must be a mapping of keys to values, got a list",
        id="workflows-a-list",
    ),
    pytest.param(
        "workflows:\n  coder: yes\n",
        "workflows.coder",
        2,
        "must be a mapping of keys to values, got true",
        id="workflow-not-a-mapping",
    ),
    pytest.param("- a\n- b\n", "", None, "must be a mapping with a `workflows` key", id="list"),
    pytest.param(
        "workflows:\n  coder:\n    hooks:\n      on_complete:\n        - {name: tests, run: a}\n"
        "      on_done:\n        - {name: tests, run: b}\n",
        "workflows.coder.hooks.on_done[0].name",
        7,
        "'tests' is already the name of hooks.on_complete[0]; check runs are named after "
        "hooks, so each needs its own name",
        id="hook-name-twice",
    ),
    pytest.param(
        "workflows:\n  coder: {}\n  other: {trigger_labels: [OpenASE]}\n",
        "workflows.other.trigger_labels",
        3,
        "workflows 'coder' and 'other' both pick up tickets in 'todo' labelled 'openase'; "
        "give one of them another trigger label",
        id="ambiguous",
    ),
    pytest.param(
        "workflows:\n  coder: {}\nstate_labels:\n  reviewing: openase/reviewing\n",
        "state_labels.reviewing",
        4,
        "no state 'reviewing' (states: backlog, todo, in_progress, in_review, merging, done, "
        "canceled, failed)",
        id="state-label-unknown-state",
    ),
    pytest.param(
        "state_labels:\n  done: openase/todo\n",
        "state_labels.done",
        None,
        "'openase/todo' is already the label of 'todo'",
        id="state-label-twice",
    ),
    pytest.param(
        "state_labels:\n  todo: openase\n",
        "state_labels.todo",
        2,
        "'openase' is also a trigger label",
        id="state-label-is-a-trigger",
    ),
    pytest.param(
        "state_labels:\n  todo: 'a,b'\n",
        "state_labels.todo",
        2,
        "a label name has 1 to 50 characters, no commas and no leading or trailing spaces; "
        "got 'a,b'",
        id="label-with-comma",
    ),
    pytest.param(
        "commands:\n  approve: {users: octocat}\n",
        "commands.approve.users",
        2,
        "must be a list, got 'octocat'",
        id="command-users",
    ),
    pytest.param(
        "commands:\n  /approve: {users: [octocat]}\n",
        "commands./approve",
        2,
        "bad name: a command is its word after the slash (like 'approve'); got '/approve'",
        id="command-name",
    ),
    pytest.param(
        "[" * 5000 + "]" * 5000,
        "",
        None,
        "is nested too deeply to read",
        id="deep-nesting",
    ),
    pytest.param(
        "workflows:\n  coder: {}\n  coder: {}\n",
        "workflows.coder",
        3,
        "appears twice (also on line 2); YAML would keep only the last",
        id="duplicate-key",
    ),
    pytest.param(
        "workflows:\n  coder:\n    sandbox: maybe\n",
        "workflows.coder.sandbox",
        3,
        "must be 'on' or 'off', got 'maybe'",
        id="sandbox-switch",
    ),
    pytest.param(
        "workflows:\n  coder:\n    network: closed\n",
        "workflows.coder.network",
        3,
        "is 'open' (no egress control) or {allow: [HOST, ...]}; got 'closed'",
        id="network-word",
    ),
    pytest.param(
        "workflows:\n  coder:\n    network:\n      allow: [registry.npmjs.org, 'https://x.io']\n",
        "workflows.coder.network.allow[1]",
        4,
        "a host is a name, `*.` and a domain, or an IPv4 address, optionally with :PORT "
        "(for example registry.npmjs.org, '*.pypi.org', ghcr.io:443); got 'https://x.io'",
        id="network-host",
    ),
]


@pytest.mark.parametrize(("text", "key", "line", "reason"), INVALID)
def test_invalid_configs_name_the_key_and_say_why(
    text: str, key: str, line: int | None, reason: str, control: ControlConfig
) -> None:
    found = problems(text, control)
    assert [(p.key, p.reason) for p in found] == [(key, reason)]
    assert found[0].file == F
    if line is not None:
        assert found[0].line == line


def test_several_problems_come_back_together_in_file_order(control: ControlConfig) -> None:
    found = problems(
        "workflows:\n  coder:\n    merge_method: ff\n    max_attempts: 0\n    aproval: x\n",
        control,
    )
    assert [(p.line, p.key) for p in found] == [
        (3, "workflows.coder.merge_method"),
        (4, "workflows.coder.max_attempts"),
        (5, "workflows.coder.aproval"),
    ]


def test_a_relay_cycle_is_an_error(control: ControlConfig) -> None:
    found = problems(
        """
workflows:
  coder: {finish: backend}
  backend: {pickup: backend, finish: tests}
  tests: {pickup: tests, finish: backend}
""",
        control,
    )
    assert [(p.key, p.line, p.reason) for p in found] == [
        (
            "workflows.tests.finish",
            5,
            "the relay comes back round and never ends: backend (backend -> tests) -> "
            "tests (tests -> backend) -> backend",
        )
    ]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "workflows:\n  coder:\n    hooks: [a\n    b: c\n",
            4,
            "is not valid YAML: expected ',' or ']', but got ':' (while parsing a flow "
            "sequence) at column 6",
        ),
        (
            "workflows:\n  coder:\n   harness: x\n    skills: []\n",
            4,
            "is not valid YAML: mapping values are not allowed here at column 11",
        ),
        (
            "workflows:\n\tcoder: {}\n",
            2,
            "is not valid YAML: found character '\\t' that cannot start any token (while "
            "scanning for the next token) at column 1",
        ),
        (
            "a: 1\n---\nb: 2\n",
            2,
            "is not valid YAML: expected a single document in the stream, but found another "
            "document at column 1",
        ),
        (
            "workflows: !!python/object:os.system {}\n",
            1,
            "is not valid YAML: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system' at column 12",
        ),
    ],
)
def test_yaml_syntax_errors_carry_the_line(
    text: str, line: int, reason: str, control: ControlConfig
) -> None:
    assert [(p.key, p.line, p.reason) for p in problems(text, control)] == [("", line, reason)]


def test_aliases_work_but_cannot_blow_up(control: ControlConfig) -> None:
    # Top-level `x-` keys are ignored: a place for anchors, as in Compose files.
    config = parsed(
        """
x-checks: &checks
  on_complete: [{name: tests, run: pytest}]
workflows:
  coder: {hooks: *checks}
  docs: {hooks: *checks}
""",
        control,
    )
    assert config.workflows["coder"].hooks == config.workflows["docs"].hooks
    assert [hook.name for hook in config.workflows["docs"].hooks.on_complete] == ["tests"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, "
        bomb += f"*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
    found = problems(bomb, control)
    assert len(found) == 1
    assert found[0].reason == "expands to more than 20000 values (through aliases)"


def test_explain_lists_file_line_key_and_reason_as_markdown(control: ControlConfig) -> None:
    found = problems(
        "workflows:\n  coder:\n    hooks:\n      on_complete:\n"
        "        - {name: tests, run: pytest, timeout: ten}\n"
        "    approval: '@octo-org/admins <b>'\n",
        control,
    )
    assert explain(found) == (
        "OpenASE cannot use its configuration for this repository, so nothing runs:\n"
        "\n"
        "- `.github/openase.yml` line 5, `workflows.coder.hooks.on_complete[0].timeout`: "
        "must be a number of seconds, got 'ten'\n"
        "- `.github/openase.yml` line 6, `workflows.coder.approval`: must be 'required' or "
        "'none', got '@\u2060octo-org/admins &lt;b&gt;'\n"
        "\n"
        "The configuration is read from the default branch, never from a pull request: "
        "fix it there."
    )
    whole = ConfigProblem(F, "", "is 70000 bytes; the limit is 65536")
    assert "- `.github/openase.yml`: is 70000 bytes; the limit is 65536" in explain([whole])


def test_problems_read_as_one_line_each() -> None:
    problem = ConfigProblem(F, "workflows.coder.approval", "must be 'required' or 'none'", 3)
    assert str(problem) == (
        ".github/openase.yml, line 3: workflows.coder.approval: must be 'required' or 'none'"
    )
    assert str(ConfigProblem(F, "", "is not UTF-8 text")) == f"{F}: is not UTF-8 text"
