"""A workflow of a repository's `.github/openase.yml` (the file as a whole: bot/config/repo.py).

A workflow picks up tickets in one state (`todo`, `backlog` or a stage of the repo's own,
such as `backend`) that carry one of its trigger labels, and leaves them in its finish
state. When that finish state is another workflow's pickup state the next workflow takes
the ticket over: several workflows relay one ticket (design -> backend -> tests -> review),
each with its own harness, provider and hooks. Anything left out of a workflow comes from
the control plane's `defaults.workflow`, then from the built-in defaults below. The field
types here are shared with the control-plane config (bot/config/control.py).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from bot.config.states import LABEL_PREFIX, State, default_label
from harness_store.errors import InvalidName
from harness_store.names import validate_name
from runner.contract import Hooks, HostPattern

REPO_CONFIG_PATH = ".github/openase.yml"
DEFAULT_WORKFLOW = "coder"
DEFAULT_TRIGGER = "openase"
DEFAULT_HARNESS = "coder"
DEFAULT_SKILLS = ("run-tests", "commit-message")
STATUS_LABEL_PREFIX = LABEL_PREFIX
CANONICAL_STATES = tuple(state.value for state in State)
# The engine alone moves tickets into these; a workflow can neither start nor end in them
# (in_review is the one end state a workflow names: its PR then waits for review).
ENGINE_STATES = frozenset(
    {State.IN_PROGRESS, State.MERGING, State.DONE, State.CANCELED, State.FAILED}
)
INTAKE_STATES = frozenset({State.BACKLOG, State.TODO})

# At most 40 characters, so `openase/<state>` stays within GitHub's 50 for a label.
_STATE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_MAX_LABEL = 50  # GitHub's limit on a label name
MAX_WORKFLOWS = 50
MAX_RELAY_CHAINS = 100  # relay() lists at most this many (branching stages multiply them)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- field types (shared with bot.config.control) ---------------------------------------


def named(kind: str) -> AfterValidator:
    """The harness store's name rule (lowercase, digits, single hyphens) for a `kind` name."""

    def check(value: str) -> str:
        try:  # only the rule is borrowed; the message names `kind`
            return validate_name("skill", value)
        except InvalidName:
            raise ValueError(
                f"{kind} names use lowercase letters, digits and single hyphens, at most 64 "
                f"characters (for example 'run-tests'); got {value[:64]!r}"
            ) from None

    return AfterValidator(check)


def _state(value: str) -> str:
    # `in-review` as labels spell it is accepted for `in_review`.
    state = value.replace("-", "_")
    if not _STATE.fullmatch(state):
        raise ValueError(
            "state names are lowercase letters, digits and underscores, starting with a "
            f"letter (for example 'todo' or 'backend'); got {value[:64]!r}"
        )
    return state


def _label(value: str) -> str:
    if not value or value != value.strip() or len(value) > _MAX_LABEL or "," in value:
        raise ValueError(
            f"a label name has 1 to {_MAX_LABEL} characters, no commas and no leading or "
            f"trailing spaces; got {value[:64]!r}"
        )
    return value


def _command(value: str) -> str:
    if not re.fullmatch(r"[a-z]{1,32}", value):
        raise ValueError(
            f"a command is its word after the slash (like 'approve'); got {value[:64]!r}"
        )
    return value


def _machine_label(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:=/-]{0,63}", value):
        raise ValueError(
            "machine labels are letters, digits and . _ : = / - (for example 'gpu' or "
            f"'os=linux'), at most 64 characters; got {value[:64]!r}"
        )
    return value


CommandName = Annotated[str, AfterValidator(_command)]
ProviderName = Annotated[str, named("provider")]
WorkflowName = Annotated[str, named("workflow")]
SkillName = Annotated[str, named("skill")]
StateName = Annotated[str, AfterValidator(_state)]
LabelName = Annotated[str, AfterValidator(_label)]
MachineLabel = Annotated[str, AfterValidator(_machine_label)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=7 * 24 * 3600)]
Dollars = Annotated[float, Strict(), Field(gt=0)]
Count = Annotated[int, Strict(), Field(ge=1)]


status_label = default_label  # `in_review` -> `openase/in-review`


# --- the models -------------------------------------------------------------------------


class HarnessPin(_Model):
    """`coder` (the harness's current version at claim time) or `coder@3` (pinned)."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> HarnessPin:
        """`NAME` or `NAME@VERSION`; ValueError saying the expected form otherwise."""
        name, at, version = text.partition("@")
        try:
            validate_name("harness", name)
        except InvalidName:
            raise ValueError(
                "harness names use lowercase letters, digits and single hyphens, optionally "
                f"with @VERSION (for example 'coder' or 'coder@3'); got {text[:64]!r}"
            ) from None
        if at and not (version.isdigit() and version.isascii() and int(version) >= 1):
            raise ValueError(
                f"a harness version is a whole number from 1 (for example {name}@3); "
                f"got {text[:80]!r}"
            )
        return cls(name=name, version=int(version) if at else None)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

    @model_serializer
    def _as_text(self) -> str:
        return str(self)


def _harness(value: object) -> object:
    if isinstance(value, str):
        return HarnessPin.parse(value)
    if isinstance(value, HarnessPin):
        return value
    raise ValueError(
        f"must be a harness name like 'coder' or 'coder@3', got {type(value).__name__}"
    )


class Concurrency(_Model):
    """At most this many tickets in progress at once; unset means no limit of that kind."""

    workflow: Count | None = None
    repo: Count | None = None
    machine: Count | None = None


class WorkflowLimits(_Model):
    concurrency: Concurrency = Concurrency()
    budget_usd: Dollars | None = None
    # What one ticket may spend across all its attempts and relay stages (bot/engine/budgets.py).
    ticket_budget_usd: Dollars | None = None
    wall_seconds: Seconds | None = None
    stall_seconds: Seconds | None = None
    max_tokens: Count | None = None
    backoff_seconds: Seconds = 60  # retry n waits backoff_seconds * 2**(n-1)
    # An agent's question no one has answered is reminded once after this long.
    remind_after_seconds: Seconds = 24 * 3600


_HOST = re.compile(r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:[0-9]{1,5})?")


def _host(value: object) -> object:
    if isinstance(value, str) and not _HOST.fullmatch(value):
        raise ValueError(
            "a host is a name, `*.` and a domain, or an IPv4 address, optionally with :PORT "
            f"(for example registry.npmjs.org, '*.pypi.org', ghcr.io:443); got {value[:80]!r}"
        )
    return value


class Network(_Model):
    """`network: {allow: [registry.npmjs.org, "*.pypi.org", "ghcr.io:443"]}`: hosts a run may
    reach through the runner's proxy besides the provider's model API; `network: open`: no
    egress control at all."""

    open: bool = False
    allow: tuple[Annotated[HostPattern, BeforeValidator(_host)], ...] = ()


def _network(value: object) -> object:
    if isinstance(value, str):
        if value != "open":
            raise ValueError(
                f"is 'open' (no egress control) or {{allow: [HOST, ...]}}; got {value[:64]!r}"
            )
        return {"open": True}
    return value


def _switch(value: object) -> object:
    # YAML reads a bare `off`/`on` as a boolean; both spellings mean the same here.
    if value is False:
        return "off"
    if value is True:
        return "on"
    return value


SandboxSwitch = Annotated[Literal["on", "off"], BeforeValidator(_switch)]
NetworkPolicy = Annotated[Network, BeforeValidator(_network)]


class Workflow(_Model):
    """One workflow of a repository (its name is its key under `workflows`)."""

    name: str = Field(json_schema_extra={"from_key": True})
    trigger_labels: Annotated[tuple[LabelName, ...], Field(min_length=1)]
    pickup: StateName = "todo"
    finish: StateName = Field(default="in_review", validate_default=True)
    harness: Annotated[HarnessPin, BeforeValidator(_harness)] = HarnessPin(name=DEFAULT_HARNESS)
    skills: tuple[SkillName, ...] = DEFAULT_SKILLS
    provider: ProviderName
    hooks: Hooks = Hooks()
    approval: Literal["required", "none"] = "required"
    merge_method: Literal["merge", "squash", "rebase"] = "squash"
    max_attempts: Annotated[int, Strict(), Field(ge=1, le=100)] = 3
    limits: WorkflowLimits = WorkflowLimits()
    machine_labels: tuple[MachineLabel, ...] = ()
    # Confinement (runner/sandbox): on by default; `sandbox: off` and `network: open` only
    # when written out, here or in the control plane's `defaults.workflow`.
    sandbox: SandboxSwitch = "on"
    network: NetworkPolicy = Network()

    @field_validator("trigger_labels")
    @classmethod
    def _not_status_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        for label in labels:
            if label.lower().startswith(STATUS_LABEL_PREFIX):
                raise ValueError(
                    f"{label!r}: labels starting with {STATUS_LABEL_PREFIX!r} are the status "
                    f"labels the bot sets; use for example 'openase' or 'openase:docs'"
                )
        return labels

    @field_validator("pickup")
    @classmethod
    def _pickup_state(cls, state: str) -> str:
        if state in ENGINE_STATES or state == "in_review":
            raise ValueError(
                f"a workflow picks up tickets in 'todo', 'backlog' or a stage of your own "
                f"(like 'backend'); the engine alone moves tickets into {state!r}"
            )
        return state

    @field_validator("finish")
    @classmethod
    def _finish_state(cls, state: str, info: ValidationInfo) -> str:
        if state in ENGINE_STATES or state in INTAKE_STATES:
            raise ValueError(
                "a workflow finishes in 'in_review' or in the stage the next workflow picks "
                f"up (like 'tests'); the engine alone moves tickets into {state!r}"
                if state in ENGINE_STATES
                else f"a workflow cannot finish in {state!r}: that would start the ticket over"
            )
        if state == info.data.get("pickup"):
            raise ValueError(
                f"equals pickup ({state!r}): this workflow would pick the ticket up again forever"
            )
        return state

    @property
    def approval_required(self) -> bool:
        return self.approval == "required"
