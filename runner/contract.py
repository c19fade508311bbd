"""What the control plane and a runner say to each other: `RunSpec` in, `AgentEvent`s and a
`RunResult` out.

Both sides pass these as plain JSON-shaped dicts (`to_wire` / `from_wire`), never as pickled
classes, and every message carries `schema_version`. A runner and a control plane of
different schema versions refuse each other's messages with `ContractMismatch`, which
says which side to upgrade, instead of misreading fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SecretStr,
    ValidationError,
    field_serializer,
)

# 2: RunSpec.sandbox (issue 15); a runner of version 1 would run a spec unconfined.
# 3: RunStatus.NEEDS_INPUT and RunResult.question (issue 17): a runner of version 2 would
# report an agent that stopped to ask as a success.
SCHEMA_VERSION = 3

# arq queue a machine's runner listens on; the control plane enqueues `RUN_JOB` there.
RUN_QUEUE_PREFIX = "openase:runs:"
RUN_JOB = "execute_run"
# arq job on the same queue: drop a ticket's worktree (the ticket is done), keep the mirror.
REMOVE_WORKTREE_JOB = "remove_worktree"
# The control plane's arq queue, and the job a runner puts there when a run has a result:
# the engine takes it in at once instead of at its next sweep.
CONTROL_QUEUE = "openase:control"
RUN_FINISHED_JOB = "run_finished"


def run_finished_job_id(run_id: str) -> str:
    """The announcement's arq job id: one job per run, however many announce it."""
    return f"run-finished:{run_id}"


def run_queue(machine: str) -> str:
    return f"{RUN_QUEUE_PREFIX}{machine}"


def run_wake_channel(machine: str) -> str:
    """The Redis channel a run's sender publishes on as it queues the run, so the machine's
    runner looks at its queue at once instead of polling it often (runner/wakeup.py)."""
    return f"openase:runner-wake:{machine}"


def run_events_stream(run_id: str) -> str:
    """Redis stream of a run's `AgentEvent`s (bounded; see runner.events)."""
    return f"openase:run:{run_id}:events"


def run_heartbeat_key(run_id: str) -> str:
    """Redis key that exists while the run is alive (refreshed every few seconds)."""
    return f"openase:run:{run_id}:alive"


def run_result_key(run_id: str) -> str:
    """Redis key holding the run's RunResult (also there when the arq job was aborted)."""
    return f"openase:run:{run_id}:result"


def run_cancel_key(run_id: str) -> str:
    """Redis key whose presence asks the runner to cancel the run."""
    return f"openase:run:{run_id}:cancel"


def machine_key(machine: str) -> str:
    """Redis hash a runner keeps fresh with its facts and heartbeat."""
    return f"openase:machine:{machine}"


MACHINES_SET = "openase:machines"

# The agent's way to ask a person (the built-in `ask-a-human` skill): the run names a file
# in this variable; a question written there and the agent's exit make the run needs_input.
QUESTION_FILE_ENV = "OPENASE_QUESTION_FILE"
QUESTION_LIMIT = 4000  # characters of a question kept


class ContractMismatch(Exception):
    """A message from a peer speaking another schema version, or not a message at all."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Secrets (the git token, the provider's env) are in clear only in `RunSpec.to_wire`, the
# runner's copy; any other JSON dump of a spec (the run's row, a log) has them masked.
_REVEAL = {"reveal_secrets": True}


def _revealing(info: FieldSerializationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("reveal_secrets") is True


Name = Annotated[str, Field(min_length=1, max_length=200)]


class TicketRef(_Model):
    key: Name  # stable and human-readable, e.g. "octo/hello#12" or "ENG-42"
    number: int | None = None
    title: str = ""
    body: str = ""
    url: str | None = None
    labels: tuple[str, ...] = ()


class RepoRef(_Model):
    full_name: Name  # "owner/name": names the bare mirror on the machine
    clone_url: Name  # as the code host reports it; may be a local path in tests
    default_branch: Name = "main"


class HarnessRef(_Model):
    name: Name
    version: int = Field(ge=1)
    version_id: int | None = None  # harness_store row id, for "which runs used which version"
    text: str  # already rendered by the control plane


class SkillFile(_Model):
    path: Name  # relative to the skill folder, forward slashes
    content: str


class SkillSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    version: int = Field(ge=1)
    version_id: int | None = None
    files: tuple[SkillFile, ...]


AgentCli = Literal["claude_code", "codex", "gemini", "command"]

Rate = Annotated[float, Field(ge=0, le=10_000)]


class ModelPrice(_Model):
    """A model's list prices in USD per million tokens (runner/pricing/prices.toml, or the
    control config's `prices:`); the runner prices each model turn's usage with them."""

    input: Rate
    output: Rate
    cache_read: Rate
    cache_write: Rate

    def cost(self, usage: Usage) -> float:
        """What `usage` costs at these prices, in USD."""
        return (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        ) / 1_000_000


class AgentConfig(_Model):
    cli: AgentCli
    model: str | None = None
    # `command` agent: argv template; {prompt}, {prompt_file}, {workspace}, {ticket} expand.
    argv: tuple[str, ...] = ()
    # Provider settings (API keys, base URLs): the only variables the agent gets beyond a
    # minimal PATH/HOME/LANG.
    env: dict[str, SecretStr] = Field(default_factory=dict)
    binary: str | None = None  # path or name on PATH; the CLI's usual name when unset
    max_turns: int | None = Field(default=None, ge=1)
    resume_session_id: str | None = None
    extra_args: tuple[str, ...] = ()
    # Prices of the models this CLI may call (model name -> price), resolved by the control
    # plane from the shipped table and the control config; matched by runner/pricing.
    prices: dict[str, ModelPrice] = Field(default_factory=dict)

    @field_serializer("env", when_used="json")
    def _reveal_env(
        self, env: dict[str, SecretStr], info: FieldSerializationInfo
    ) -> dict[str, str]:
        # Wire form only; repr(), logs and stored copies show '**********'.
        if not _revealing(info):
            return {key: str(value) for key, value in env.items()}
        return {key: value.get_secret_value() for key, value in env.items()}


OnFailure = Literal["block", "warn", "ignore"]
HookPhase = Literal["on_claim", "on_start", "on_complete", "on_done", "on_error", "on_cancel"]
HOOK_PHASES: tuple[HookPhase, ...] = (
    "on_claim",
    "on_start",
    "on_complete",
    "on_done",
    "on_error",
    "on_cancel",
)


class HookSpec(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    run: Annotated[str, Field(min_length=1)]  # a shell command, run with /bin/sh -c
    timeout: float = Field(default=600, gt=0, le=24 * 3600)
    on_failure: OnFailure = "block"


class Hooks(_Model):
    on_claim: tuple[HookSpec, ...] = ()
    on_start: tuple[HookSpec, ...] = ()
    on_complete: tuple[HookSpec, ...] = ()
    on_done: tuple[HookSpec, ...] = ()
    on_error: tuple[HookSpec, ...] = ()
    on_cancel: tuple[HookSpec, ...] = ()

    def phase(self, phase: HookPhase) -> tuple[HookSpec, ...]:
        hooks: tuple[HookSpec, ...] = getattr(self, phase)
        return hooks


class Limits(_Model):
    wall_seconds: float = Field(default=3600, gt=0)
    stall_seconds: float = Field(default=300, gt=0)  # no output at all for this long
    budget_usd: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    kill_grace_seconds: float = Field(default=5, ge=0, le=60)  # SIGTERM .. SIGKILL


# A host name, `*.` and a domain (any subdomain), or either with `:PORT`; IPv4 addresses too
# (a local model server in tests). Matched against what a client asks the proxy for.
HostPattern = Annotated[
    str,
    Field(
        min_length=1,
        max_length=260,
        pattern=r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?(:[0-9]{1,5})?$",
    ),
]


class SandboxPolicy(_Model):
    """How a run is confined (runner/sandbox). The default is the safe one: the engine
    sends `enabled=False` or `network="open"` only when the workflow writes it out."""

    enabled: bool = True
    # "allowlist": egress only through the runner's proxy, to the provider's model hosts
    # and `allow`; "open": the run shares the machine's network.
    network: Literal["allowlist", "open"] = "allowlist"
    allow: tuple[HostPattern, ...] = ()
    max_processes: int = Field(default=512, ge=8, le=65536)
    max_memory_mb: int = Field(default=8192, ge=64)
    max_file_mb: int = Field(default=4096, ge=1)


class GitIdentity(_Model):
    name: str = "OpenASE"
    email: str = "openase@users.noreply.github.com"


class RunSpec(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    ticket: TicketRef
    repo: RepoRef
    base_branch: Name
    work_branch: Name
    prompt: str  # the task for this attempt (the harness text travels separately)
    harness: HarnessRef
    skills: tuple[SkillSpec, ...] = ()
    agent: AgentConfig
    hooks: Hooks = Hooks()
    limits: Limits = Limits()
    attempt: int = Field(default=1, ge=1)
    previous_failure: str | None = None
    git_token: SecretStr | None = None  # short-lived; reaches git only through its env
    git_identity: GitIdentity = GitIdentity()
    push: bool = True  # False for read-only runs (/ask, `openase try` without a remote)
    sandbox: SandboxPolicy = SandboxPolicy()

    @field_serializer("git_token", when_used="json")
    def _reveal_token(self, token: SecretStr | None, info: FieldSerializationInfo) -> str | None:
        if token is None or not _revealing(info):
            return None  # a stored copy holds no token (a resend mints a new one)
        return token.get_secret_value()

    def to_wire(self) -> dict[str, Any]:
        """The spec for its runner, secrets in clear (`model_dump(mode="json")` masks them)."""
        return self.model_dump(mode="json", context=_REVEAL)

    @classmethod
    def from_wire(cls, data: object) -> Self:
        return _from_wire(cls, data, "RunSpec")


class Usage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"  # agent finished and every blocking hook passed
    GATES_FAILED = "gates_failed"  # agent finished, a blocking hook failed
    AGENT_ERROR = "agent_error"  # the agent reported failure or exited non-zero
    API_ERROR = "api_error"  # the model provider failed (auth, 5xx, unreachable)
    MAX_TURNS = "max_turns"
    TIMEOUT = "timeout"  # wall-time limit
    STALLED = "stalled"  # no output for stall_seconds
    OVER_BUDGET = "over_budget"  # cost or token budget spent
    CANCELED = "canceled"
    INFRA_ERROR = "infra_error"  # the runner could not do its part (git, disk, missing CLI)
    REFUSED = "refused"  # the spec was not acceptable (schema version, invalid fields)
    # The agent stopped to ask a person (the `ask-a-human` skill): `RunResult.question`.
    NEEDS_INPUT = "needs_input"


class HookResult(_Model):
    phase: HookPhase
    name: str
    on_failure: OnFailure
    exit_code: int | None  # None when it timed out or could not start
    timed_out: bool = False
    duration_s: float
    output_tail: str = ""  # stdout and stderr interleaved, last few KB

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    @property
    def blocks(self) -> bool:
        return not self.passed and self.on_failure == "block"


class RunResult(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: RunStatus
    error_class: str | None = None  # short machine-readable cause, e.g. "git_push_failed"
    error: str | None = None  # one human sentence
    branch: str | None = None
    head_sha: str | None = None
    pushed: bool = False
    hook_results: tuple[HookResult, ...] = ()
    usage: Usage = Usage()
    cost_usd: float | None = None
    # Why cost_usd is missing or partial: a model the run's prices do not know.
    cost_note: str | None = None
    session_id: str | None = None
    summary: str | None = None  # the agent's final message
    # What the agent asked (status needs_input), as it wrote it: plain text, capped.
    question: str | None = Field(default=None, max_length=QUESTION_LIMIT)
    agent_exit_code: int | None = None
    machine: str | None = None
    started_at: datetime
    finished_at: datetime

    @property
    def succeeded(self) -> bool:
        return self.status is RunStatus.SUCCEEDED

    @property
    def gate_failures(self) -> tuple[HookResult, ...]:
        return tuple(hook for hook in self.hook_results if hook.blocks)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_wire(cls, data: object) -> Self:
        return _from_wire(cls, data, "RunResult")


class EventKind(StrEnum):
    TEXT = "text"  # assistant text
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    USAGE = "usage"  # running totals after a model turn
    RESULT = "result"  # the agent's final message and outcome
    SESSION = "session"  # the CLI's session id, for resuming
    LOG = "log"  # plain output line (command agent, stderr)
    PHASE = "phase"  # the runner's own progress: preparing, agent, hooks, pushing, done
    HOOK = "hook"  # a hook finished
    HEARTBEAT = "heartbeat"


class AgentEvent(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str = ""
    seq: int = 0  # assigned by the sink, monotonic per run
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    kind: EventKind
    text: str | None = None
    tool: str | None = None
    tool_id: str | None = None
    input: dict[str, Any] | None = None
    is_error: bool | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    session_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_wire(cls, data: object) -> Self:
        return _from_wire(cls, data, "AgentEvent")


_M = TypeVar("_M", bound=_Model)


def _from_wire(cls: type[_M], data: object, what: str) -> _M:
    if not isinstance(data, dict):
        raise ContractMismatch(f"{what}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        if isinstance(version, int) and version > SCHEMA_VERSION:
            hint = "this side is older: upgrade it (pip install -U openase)"
        elif isinstance(version, int):
            hint = "the sender is older: upgrade the sender"
        else:
            hint = "the sender does not speak the OpenASE run contract"
        raise ContractMismatch(
            f"{what} schema_version {version!r}, this side speaks {SCHEMA_VERSION}: {hint}"
        )
    try:
        return cls.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']) or '(root)'}: {issue['msg']}"
            for issue in error.errors(include_input=False)
        )
        raise ContractMismatch(f"{what} is invalid: {problems}") from None
