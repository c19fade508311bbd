"""The control-plane config (`OPENASE_CONFIG`): providers, defaults, machine routing and
which repository a Linear team or Jira project works in (DESIGN §5).

Provider `env` values and notification channels (bot/config/notifications.py) are the only
places `${VAR}` is replaced from the process environment, so API keys stay out of the file;
they are held as `SecretStr` and never shown in a message. Without a file the built-in
config has one provider, `claude`.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bot.config.notifications import Notifications, check_rules, interpolate_channels
from bot.config.notifications import is_secret as _is_channel_secret
from bot.config.prices import Prices, check_prices, prices_for, resolved
from bot.config.problems import (
    ConfigProblem,
    KeyPath,
    YamlDoc,
    by_line,
    problems_from,
    read_yaml,
    without_extensions,
)
from bot.config.schedules import duplicate_names
from bot.config.trackers import JiraConfig, LinearConfig
from bot.config.workflow import (
    DEFAULT_TRIGGER,
    DEFAULT_WORKFLOW,
    Count,
    Dollars,
    MachineLabel,
    Network,
    ProviderName,
    Seconds,
    Workflow,
)
from bot.errors import ConfigError
from runner.contract import AgentCli, AgentConfig, Limits, ModelPrice, SandboxPolicy

BUILTIN_PROVIDER = "claude"
BUILTIN_FILE = "(built-in control-plane config)"
MAX_CONTROL_BYTES = 1024 * 1024
# The `command` agent's argv placeholders (runner/agents/command.py PLACEHOLDERS; bot may
# not import the runner beyond its contract): checked here so a typo stops the start.
ARGV_PLACEHOLDERS = ("prompt", "prompt_file", "instructions_file", "workspace", "ticket", "model")

_VARIABLE = re.compile(r"\$(\$?)\{([^}]*)\}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"an environment variable name is A-Z, 0-9 and _; got {value[:64]!r}")
    return value


class ProviderLimits(_Model):
    """The operator's caps for runs of this provider; a workflow may only tighten them."""

    wall_seconds: Seconds | None = None
    stall_seconds: Seconds | None = None
    budget_usd: Dollars | None = None
    max_tokens: Count | None = None
    # A cap on what one ticket may spend across all its runs (bot/engine/budgets.py).
    ticket_budget_usd: Dollars | None = None


class Provider(_Model):
    """An agent CLI with its model, credentials and caps."""

    cli: AgentCli
    model: Annotated[str, Field(min_length=1)] | None = None
    argv: tuple[str, ...] = Field(default=(), validate_default=True)
    env: dict[Annotated[str, AfterValidator(_env_name)], SecretStr] = Field(default_factory=dict)
    limits: ProviderLimits = ProviderLimits()
    machine_labels: tuple[MachineLabel, ...] = ()
    # Hosts every run of this provider may reach besides its model API (which is always
    # allowed, as is any http(s) URL among `env`, such as a base URL).
    network: Network = Network()
    # The prices its runs are sent, resolved by ControlConfig from the shipped table and
    # the config's `prices:` (not a key of the file).
    _prices: dict[str, ModelPrice] = PrivateAttr(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _argv_for_command_only(cls, argv: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        cli = info.data.get("cli")
        if cli == "command" and not argv:
            raise ValueError(
                "is required for cli 'command': the program and its arguments, for example "
                "[python3, agent.py, '{prompt_file}']"
            )
        if cli is not None and cli != "command" and argv:
            raise ValueError(f"only a cli 'command' provider takes argv, this one is {cli!r}")
        for element in argv:
            _check_placeholders(element)
        return argv

    def agent_config(self) -> AgentConfig:
        """The `AgentConfig` a RunSpec carries for this provider."""
        return AgentConfig(
            cli=self.cli,
            model=self.model,
            argv=self.argv,
            env=dict(self.env),
            prices=dict(self._prices),
        )


def _check_placeholders(element: str) -> None:
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(element) if name is not None]
    except ValueError:
        raise ValueError(
            f"argv element {element[:80]!r} has an unmatched brace (write literal braces as "
            "'{{' and '}}')"
        ) from None
    for name in names:
        if name not in ARGV_PLACEHOLDERS:
            known = ", ".join(f"{{{known}}}" for known in ARGV_PLACEHOLDERS)
            raise ValueError(f"argv uses unknown placeholder {{{name}}}; known: {known}")


class Defaults(_Model):
    """What a repository's workflow gets for the fields it leaves out."""

    provider: ProviderName
    # Raw workflow fields, validated by `parse_control_config` as a workflow would be.
    workflow: dict[str, Any] = Field(default_factory=dict)


class Machines(_Model):
    """Routing: labels a machine must carry when neither workflow nor provider names any."""

    default_labels: tuple[MachineLabel, ...] = ()


class ControlConfig(_Model):
    """The whole control-plane config; build it with `parse_control_config` or `load_…`."""

    providers: Annotated[dict[ProviderName, Provider], Field(min_length=1)]
    defaults: Defaults
    machines: Machines = Machines()
    linear: LinearConfig = LinearConfig()
    jira: JiraConfig = JiraConfig()
    notifications: Notifications = Notifications()
    # Model prices over the shipped table (bot/config/prices.py).
    prices: Prices = Field(default_factory=dict)

    @model_validator(mode="after")
    def _price_providers(self) -> ControlConfig:
        overrides = resolved(self.prices)
        for provider in self.providers.values():
            provider._prices = prices_for(provider.cli, provider.model, overrides)
        return self

    def provider(self, name: str) -> Provider:
        """The provider called `name`; KeyError when there is none."""
        return self.providers[name]

    def machine_labels(
        self, provider: str, workflow_labels: tuple[str, ...] = ()
    ) -> frozenset[str]:
        """Labels a machine needs for a run: the workflow's and the provider's, else defaults."""
        labels = set(workflow_labels) | set(self.providers[provider].machine_labels)
        return frozenset(labels or self.machines.default_labels)


def default_control_config(environ: Mapping[str, str] | None = None) -> ControlConfig:
    """The config without `OPENASE_CONFIG`: Claude Code, with ANTHROPIC_API_KEY if set."""
    result = parse_control_config("", file=BUILTIN_FILE, environ=environ)
    if isinstance(result, list):  # only an error of ours could get here
        raise ConfigError("; ".join(map(str, result)))
    return result


def load_control_config(
    path: Path | None, environ: Mapping[str, str] | None = None
) -> ControlConfig:
    """Read `OPENASE_CONFIG` at start; ConfigError (exit 2) naming the file, line and key."""
    if path is None:
        return default_control_config(environ)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"OPENASE_CONFIG {path}: {error.strerror or error}") from None
    if len(raw) > MAX_CONTROL_BYTES:
        raise ConfigError(f"OPENASE_CONFIG {path}: larger than {MAX_CONTROL_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"OPENASE_CONFIG {path}: not UTF-8 text (byte {error.start})") from None
    result = parse_control_config(text, file=str(path), environ=environ)
    if isinstance(result, list):
        details = "\n".join(f"  {problem}" for problem in result)
        raise ConfigError(f"invalid control-plane config (OPENASE_CONFIG):\n{details}")
    return result


def parse_control_config(
    text: str, *, file: str, environ: Mapping[str, str] | None = None
) -> ControlConfig | list[ConfigProblem]:
    """Validate control-plane YAML; every problem found, never an exception for bad input."""
    env = os.environ if environ is None else environ
    doc = read_yaml(text, file)
    if isinstance(doc, list):
        return doc
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "must be a mapping with `providers` and `defaults`")]
    data = without_extensions(data)
    if "providers" not in data:
        data["providers"] = _builtin_providers(env)
    problems = _interpolate(data, doc, env)
    problems += interpolate_channels(data, doc, env, _expand)
    _infer_default_provider(data)
    try:
        config = ControlConfig.model_validate(data)
    except ValidationError as error:
        problems += problems_from(error, doc, ControlConfig, secret=_is_secret)
        return sorted(problems, key=by_line)
    if problems:
        return problems
    problems = _cross_check(config, doc) + check_rules(config.notifications, doc)
    problems += check_prices(config.prices, doc)
    return sorted(problems, key=by_line) if problems else config


def _builtin_providers(env: Mapping[str, str]) -> dict[str, Any]:
    passed = {"ANTHROPIC_API_KEY": "${ANTHROPIC_API_KEY}"} if "ANTHROPIC_API_KEY" in env else {}
    return {BUILTIN_PROVIDER: {"cli": "claude_code", "env": passed}}


def _infer_default_provider(data: dict[str, Any]) -> None:
    """With one provider, `defaults.provider` may be left out."""
    providers, defaults = data.get("providers"), data.get("defaults", {})
    if not isinstance(providers, dict) or len(providers) != 1:
        return
    if isinstance(defaults, dict) and "provider" not in defaults:
        data["defaults"] = {**defaults, "provider": next(iter(providers))}


def _is_secret(path: KeyPath) -> bool:
    if _is_channel_secret(path):
        return True
    return len(path) >= 3 and path[0] == "providers" and path[2] == "env"


def _interpolate(data: dict[str, Any], doc: YamlDoc, env: Mapping[str, str]) -> list[ConfigProblem]:
    """Replace `${VAR}` in provider env values in place (`$${VAR}` stays literal)."""
    problems: list[ConfigProblem] = []
    providers = data.get("providers")
    if not isinstance(providers, dict):
        return problems
    data["providers"] = providers = dict(providers)
    for name, provider in providers.items():
        if not isinstance(provider, dict) or not isinstance(provider.get("env"), dict):
            continue
        values = dict(provider["env"])
        for key, value in values.items():
            if not isinstance(value, str):
                path = ("providers", name, "env", key)
                problems.append(doc.problem(path, "must be text (put quotes around it)"))
                continue
            values[key], missing = _expand(value, env)
            for variable in missing:
                reason = (
                    f"provider {name!r} passes {key} from the environment variable "
                    f"{variable}, which is not set"
                    if _ENV_NAME.fullmatch(variable)
                    else f"provider {name!r}, {key}: '${{{variable}}}' is not a variable name"
                )
                problems.append(doc.problem(("providers", name, "env", key), reason))
        providers[name] = {**provider, "env": values}
    return problems


def _expand(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`value` with `${VAR}` replaced, and the variables that are not set."""
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        escaped, variable = match.group(1), match.group(2)
        if escaped:
            return match.group(0)[1:]
        if not _ENV_NAME.fullmatch(variable) or variable not in env:
            missing.append(variable)
            return ""
        return env[variable]

    return _VARIABLE.sub(substitute, value), missing


def _cross_check(config: ControlConfig, doc: YamlDoc) -> list[ConfigProblem]:
    problems = []
    if config.defaults.provider not in config.providers:
        known = ", ".join(config.providers)
        problems.append(
            doc.problem(
                ("defaults", "provider"),
                f"no provider {config.defaults.provider!r} under `providers` (defined: {known})",
            )
        )
        return problems
    return check_workflow_defaults(config, doc) + _tracker_schedules(config, doc)


def _tracker_schedules(config: ControlConfig, doc: YamlDoc) -> list[ConfigProblem]:
    """A schedule name is used once per Linear team and per Jira project; a Jira label has
    no spaces (Jira refuses one that has)."""
    scopes = [(("linear", "teams", key), route) for key, route in config.linear.teams.items()] + [
        (("jira", "projects", key), route) for key, route in config.jira.projects.items()
    ]
    problems = [
        doc.problem((*path, "schedules", index, "name"), f"{name!r} is used twice")
        for path, route in scopes
        for index, name in duplicate_names(route.schedules)
    ]
    return problems + [
        doc.problem(
            ("jira", "projects", key, "schedules", index, "labels", at),
            f"Jira labels cannot contain spaces; got {label!r}",
        )
        for key, route in config.jira.projects.items()
        for index, schedule in enumerate(route.schedules)
        for at, label in enumerate(schedule.labels)
        if any(character.isspace() for character in label)
    ]


# --- checks and limits that need the whole control config -----------------------------


def check_workflow_defaults(control: ControlConfig, doc: YamlDoc) -> list[ConfigProblem]:
    """Validate the control plane's `defaults.workflow` as a workflow would be."""
    raw = control.defaults.workflow
    prefix: KeyPath = ("defaults", "workflow")
    problems = [
        doc.problem((*prefix, key), "has no default: set it per workflow in .github/openase.yml")
        for key in ("name", "trigger_labels")
        if key in raw
    ]
    sample = {**raw, "name": DEFAULT_WORKFLOW, "trigger_labels": [DEFAULT_TRIGGER]}
    sample.setdefault("provider", control.defaults.provider)
    try:
        Workflow.model_validate(sample)
    except ValidationError as error:
        problems += problems_from(error, doc, Workflow, prefix=prefix)
        return problems
    provider = sample["provider"]
    if provider not in control.providers:
        problems.append(doc.problem((*prefix, "provider"), no_provider(provider, control)))
    return problems


def no_provider(name: str, control: ControlConfig) -> str:
    known = ", ".join(control.providers)
    return f"no provider {name!r} in the control-plane config (providers: {known})"


def sandbox_policy(provider: Provider, workflow: Workflow | None = None) -> SandboxPolicy:
    """How the run is confined: the workflow's choice (on, allowlist, when it says nothing),
    egress to what the provider and the workflow allow."""
    if workflow is None:
        return SandboxPolicy(allow=provider.network.allow)
    if workflow.network.open:
        return SandboxPolicy(enabled=workflow.sandbox == "on", network="open")
    allow = (*provider.network.allow, *workflow.network.allow)
    return SandboxPolicy(enabled=workflow.sandbox == "on", allow=tuple(dict.fromkeys(allow)))


def run_limits(workflow: Workflow, provider: Provider) -> Limits:
    """The run's limits: the workflow's within the provider's caps (the stricter wins)."""
    own, cap, base = workflow.limits, provider.limits, Limits()
    return Limits(
        wall_seconds=_stricter(own.wall_seconds, cap.wall_seconds) or base.wall_seconds,
        stall_seconds=_stricter(own.stall_seconds, cap.stall_seconds) or base.stall_seconds,
        budget_usd=_stricter(own.budget_usd, cap.budget_usd),
        max_tokens=_stricter(own.max_tokens, cap.max_tokens),
    )


def ticket_budget(workflow: Workflow, provider: Provider) -> float | None:
    """What one ticket may spend in all, across its attempts and relay stages, when this
    workflow is about to run it: the workflow's within the provider's cap."""
    return _stricter(workflow.limits.ticket_budget_usd, provider.limits.ticket_budget_usd)


_N = TypeVar("_N", int, float)


def _stricter(a: _N | None, b: _N | None) -> _N | None:
    return b if a is None else a if b is None else min(a, b)
