"""A repository's `.github/openase.yml`: its workflows (bot/config/workflow.py), state
labels and command allow-lists, parsed with the control plane's defaults, and checked
across workflows (hook names, ambiguous pickups, relay cycles, state labels)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Annotated, Any

from pydantic import (
    Field,
    ValidationError,
)

from bot.config.control import ControlConfig, no_provider
from bot.config.problems import (
    ConfigProblem,
    KeyPath,
    YamlDoc,
    by_line,
    problems_from,
    read_yaml,
    without_extensions,
)
from bot.config.schedules import MAX_SCHEDULES, Schedule
from bot.config.states import state_of_label
from bot.config.workflow import (
    CANONICAL_STATES,
    DEFAULT_TRIGGER,
    DEFAULT_WORKFLOW,
    INTAKE_STATES,
    MAX_RELAY_CHAINS,
    MAX_WORKFLOWS,
    REPO_CONFIG_PATH,
    CommandName,
    LabelName,
    StateName,
    Workflow,
    WorkflowName,
    _Model,
    status_label,
)
from bot.errors import ConfigError
from runner.contract import HOOK_PHASES


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
    commands: dict[CommandName, CommandAccess] = Field(default_factory=dict)
    schedules: Annotated[tuple[Schedule, ...], Field(max_length=MAX_SCHEDULES)] = ()

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


# --- checks across workflows ------------------------------------------------------------


def _check(config: RepoConfig, control: ControlConfig, doc: YamlDoc) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    flows = list(config.workflows.values())
    pickups = {flow.pickup for flow in flows}
    for flow in flows:
        at: KeyPath = ("workflows", flow.name)
        if flow.provider not in control.providers:
            problems.append(doc.problem((*at, "provider"), no_provider(flow.provider, control)))
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
    problems += _schedules(config, doc)
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


def _schedules(config: RepoConfig, doc: YamlDoc) -> list[ConfigProblem]:
    problems = []
    seen: set[str] = set()
    for index, schedule in enumerate(config.schedules):
        if schedule.name in seen:
            problems.append(
                doc.problem(("schedules", index, "name"), f"{schedule.name!r} is used twice")
            )
        seen.add(schedule.name)
        if schedule.workflow is not None and schedule.workflow not in config.workflows:
            problems.append(
                doc.problem(
                    ("schedules", index, "workflow"),
                    f"no workflow {schedule.workflow!r} (workflows: {', '.join(config.workflows)})",
                )
            )
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
