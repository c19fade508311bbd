"""A repository's `.github/openase.yml`: its workflows, state labels and command allow-lists.

A workflow picks up tickets in one state (`todo`, `backlog` or a stage of the repo's own,
such as `backend`) that carry one of its trigger labels, and leaves them in its finish
state. When that finish state is another workflow's pickup state the next workflow takes
the ticket over: several workflows relay one ticket (design -> backend -> tests -> review),
each with its own harness, provider and hooks. Anything left out of a workflow comes from
the control plane's `defaults.workflow`, then from the built-in defaults below.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from bot.config.problems import (
    ConfigProblem,
    KeyPath,
    YamlDoc,
    by_line,
    problems_from,
    read_yaml,
    without_extensions,
)
from bot.config.states import LABEL_PREFIX, State, default_label, state_of_label
from bot.errors import ConfigError
from harness_store.errors import InvalidName
from harness_store.names import validate_name
from runner.contract import HOOK_PHASES, Hooks, Limits

if TYPE_CHECKING:
    from bot.config.control import ControlConfig, Provider

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
_N = TypeVar("_N", int, float)


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
    wall_seconds: Seconds | None = None
    stall_seconds: Seconds | None = None
    max_tokens: Count | None = None
    backoff_seconds: Seconds = 60  # retry n waits backoff_seconds * 2**(n-1)


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


class CommandAccess(_Model):
    """Who may use a slash command besides users with write access."""

    users: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()
    teams: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = ()


class RepoConfig(_Model):
    """A repository's validated workflow config (or the default one)."""

    workflows: Annotated[
        dict[WorkflowName, Workflow], Field(min_length=1, max_length=MAX_WORKFLOWS)
    ]
    state_labels: dict[StateName, LabelName] = Field(default_factory=dict)
    commands: dict[Annotated[str, AfterValidator(_command)], CommandAccess] = Field(
        default_factory=dict
    )

    def workflow(self, name: str) -> Workflow | None:
        return self.workflows.get(name)

    @property
    def states(self) -> tuple[str, ...]:
        """Canonical states, then the repo's own stages in order of appearance."""
        found = dict.fromkeys(CANONICAL_STATES)
        for flow in self.workflows.values():
            found.update(dict.fromkeys((flow.pickup, flow.finish)))
        return tuple(found)

    def label_for(self, state: str) -> str:
        """The status label the bot sets for `state`."""
        return self.state_labels.get(state) or status_label(state)

    def state_for_label(self, label: str) -> str | None:
        """The state a status label stands for (GitHub label names ignore case)."""
        return state_of_label(label, self.status_labels)

    @property
    def status_labels(self) -> dict[str, str]:
        """Every state's label, for creating the missing ones."""
        return {state: self.label_for(state) for state in self.states}

    @property
    def trigger_labels(self) -> frozenset[str]:
        return frozenset(label for flow in self.workflows.values() for label in flow.trigger_labels)


# --- parsing ----------------------------------------------------------------------------


def parse_repo_config(
    text: str | None, control: ControlConfig, *, file: str = REPO_CONFIG_PATH
) -> RepoConfig | list[ConfigProblem]:
    """Validate a repo's config text (None: the file does not exist); problems, never raises."""
    if text is None:
        return default_repo_config(control)
    doc = read_yaml(text, file)
    if isinstance(doc, list):
        return doc
    return _build(doc, control)


def default_repo_config(control: ControlConfig) -> RepoConfig:
    """The config of a repository without `.github/openase.yml`: one `coder` workflow."""
    result = _build(YamlDoc(REPO_CONFIG_PATH, None, {}), control)
    if isinstance(result, list):  # control defaults are checked at load: a bug of ours
        raise ConfigError("; ".join(map(str, result)))
    return result


def _build(doc: YamlDoc, control: ControlConfig) -> RepoConfig | list[ConfigProblem]:
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        return [doc.problem((), "must be a mapping with a `workflows` key")]
    raw = without_extensions(data)
    problems: list[ConfigProblem] = []
    workflows = raw.get("workflows", {DEFAULT_WORKFLOW: None})
    if isinstance(workflows, dict):
        prepared: dict[object, object] = {}
        for name, body in workflows.items():
            if body is None or isinstance(body, dict):
                if body is not None and "name" in body:
                    problems.append(
                        doc.problem(
                            ("workflows", name, "name"),
                            "is not a known key: a workflow's name is its key under `workflows`",
                        )
                    )
                prepared[name] = _with_defaults(str(name), body or {}, control)
            else:
                prepared[name] = body  # not a mapping: pydantic says so
        raw["workflows"] = prepared
    try:
        config = RepoConfig.model_validate(raw)
    except ValidationError as error:
        return sorted(problems + problems_from(error, doc, RepoConfig), key=by_line)
    if problems:
        return problems
    problems = _check(config, control, doc)
    return sorted(problems, key=by_line) if problems else config


def _with_defaults(name: str, body: dict[str, Any], control: ControlConfig) -> dict[str, Any]:
    merged = _merge(control.defaults.workflow, body)
    merged["name"] = name
    default_trigger = DEFAULT_TRIGGER if name == DEFAULT_WORKFLOW else f"openase:{name}"
    merged.setdefault("trigger_labels", [default_trigger])
    merged.setdefault("provider", control.defaults.provider)
    return merged


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key (the repo's win); lists and values are replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


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
        problems.append(doc.problem((*prefix, "provider"), _no_provider(provider, control)))
    return problems


def _no_provider(name: str, control: ControlConfig) -> str:
    known = ", ".join(control.providers)
    return f"no provider {name!r} in the control-plane config (providers: {known})"


# --- checks across workflows ------------------------------------------------------------


def _check(config: RepoConfig, control: ControlConfig, doc: YamlDoc) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    flows = list(config.workflows.values())
    pickups = {flow.pickup for flow in flows}
    for flow in flows:
        at: KeyPath = ("workflows", flow.name)
        if flow.provider not in control.providers:
            problems.append(doc.problem((*at, "provider"), _no_provider(flow.provider, control)))
        problems += _hook_names(flow, doc)
        if flow.finish not in CANONICAL_STATES and flow.finish not in pickups:
            problems.append(
                doc.problem(
                    (*at, "finish"),
                    f"no workflow picks up {flow.finish!r}: the ticket would wait there forever "
                    f"(finish in 'in_review', or add a workflow with pickup: {flow.finish})",
                )
            )
    problems += _ambiguities(flows, doc)
    problems += _cycles(flows, doc)
    problems += _state_labels(config, doc)
    return problems


def _hook_names(flow: Workflow, doc: YamlDoc) -> list[ConfigProblem]:
    """Check runs are named `openase/<hook>`, so two hooks may not share a name."""
    problems = []
    seen: dict[str, str] = {}
    for phase in HOOK_PHASES:
        for index, hook in enumerate(flow.hooks.phase(phase)):
            where = f"hooks.{phase}[{index}]"
            if hook.name in seen:
                problems.append(
                    doc.problem(
                        ("workflows", flow.name, "hooks", phase, index, "name"),
                        f"{hook.name!r} is already the name of {seen[hook.name]}; check runs "
                        "are named after hooks, so each needs its own name",
                    )
                )
            seen.setdefault(hook.name, where)
    return problems


def _ambiguities(flows: list[Workflow], doc: YamlDoc) -> list[ConfigProblem]:
    problems = []
    for index, flow in enumerate(flows):
        for earlier in flows[:index]:
            shared = _folded(flow.trigger_labels) & _folded(earlier.trigger_labels)
            if flow.pickup == earlier.pickup and shared:
                problems.append(
                    doc.problem(
                        ("workflows", flow.name, "trigger_labels"),
                        f"workflows {earlier.name!r} and {flow.name!r} both pick up tickets in "
                        f"{flow.pickup!r} labelled {sorted(shared)[0]!r}; give one of them "
                        "another trigger label",
                    )
                )
    return problems


def _cycles(flows: list[Workflow], doc: YamlDoc) -> list[ConfigProblem]:
    """A relay that comes back to a stage it passed would run forever (depth-first search)."""
    following = {flow.name: [f for f in flows if f.pickup == flow.finish] for flow in flows}
    problems = []
    done: set[str] = set()
    stack: list[Workflow] = []

    def visit(flow: Workflow) -> None:
        stack.append(flow)
        for step in following[flow.name]:
            if step in stack:
                loop = stack[stack.index(step) :]
                chain = " -> ".join(f"{f.name} ({f.pickup} -> {f.finish})" for f in loop)
                problems.append(
                    doc.problem(
                        ("workflows", loop[-1].name, "finish"),
                        f"the relay comes back round and never ends: {chain} -> {step.name}",
                    )
                )
            elif step.name not in done:
                visit(step)
        stack.pop()
        done.add(flow.name)

    for flow in flows:
        if flow.name not in done:
            visit(flow)
    return problems


def _state_labels(config: RepoConfig, doc: YamlDoc) -> list[ConfigProblem]:
    problems = []
    states = config.states
    for state in config.state_labels:
        if state not in states:
            problems.append(
                doc.problem(
                    ("state_labels", state),
                    f"no state {state!r} (states: {', '.join(states)})",
                )
            )
    owners: dict[str, str] = {}
    triggers = _folded(config.trigger_labels)
    for state in states:
        label = config.label_for(state)
        folded = label.casefold()
        path: KeyPath = ("state_labels", state)
        if folded in owners:
            problems.append(
                doc.problem(path, f"{label!r} is already the label of {owners[folded]!r}")
            )
        elif folded in triggers:
            problems.append(doc.problem(path, f"{label!r} is also a trigger label"))
        owners.setdefault(folded, state)
    return problems


def _folded(labels: Iterable[str]) -> set[str]:
    return {label.casefold() for label in labels}


# --- using a config ---------------------------------------------------------------------


def stage_for(config: RepoConfig, state: str, labels: Collection[str]) -> Workflow | None:
    """The workflow that picks up a ticket in `state` carrying `labels`, if any.

    A workflow matches when it picks up `state` and the ticket carries one of its trigger
    labels (case ignored); the first declared wins if the ticket matches several. A stage
    reached by relay (not `todo`/`backlog`) with a single workflow needs no trigger label:
    the ticket got there from the previous stage.
    """
    candidates = [flow for flow in config.workflows.values() if flow.pickup == state]
    carried = _folded(labels)
    for flow in candidates:
        if _folded(flow.trigger_labels) & carried:
            return flow
    if state not in INTAKE_STATES and len(candidates) == 1:
        return candidates[0]
    return None


def relay(config: RepoConfig) -> list[list[str]]:
    """Every chain of workflow names a ticket can pass through, from where it enters."""
    flows = list(config.workflows.values())
    finishes = {flow.finish for flow in flows}
    chains: list[list[str]] = []

    def walk(chain: list[Workflow]) -> None:
        following = [f for f in flows if f.pickup == chain[-1].finish and f not in chain]
        if not following and len(chains) < MAX_RELAY_CHAINS:
            chains.append([f.name for f in chain])
        for step in following:
            if len(chains) < MAX_RELAY_CHAINS:  # branching stages multiply the chains
                walk([*chain, step])

    for flow in flows:
        # A chain starts where no workflow hands over: an intake state or a stage people
        # move tickets into by hand.
        if flow.pickup in INTAKE_STATES or flow.pickup not in finishes:
            walk([flow])
    return chains


def run_limits(workflow: Workflow, provider: Provider) -> Limits:
    """The run's limits: the workflow's within the provider's caps (the stricter wins)."""
    own, cap, base = workflow.limits, provider.limits, Limits()
    return Limits(
        wall_seconds=_stricter(own.wall_seconds, cap.wall_seconds) or base.wall_seconds,
        stall_seconds=_stricter(own.stall_seconds, cap.stall_seconds) or base.stall_seconds,
        budget_usd=_stricter(own.budget_usd, cap.budget_usd),
        max_tokens=_stricter(own.max_tokens, cap.max_tokens),
    )


def _stricter(a: _N | None, b: _N | None) -> _N | None:
    return b if a is None else a if b is None else min(a, b)
