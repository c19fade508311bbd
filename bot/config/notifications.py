"""The control config's `notifications:`: named channels (a Slack incoming webhook, a signed
generic webhook, e-mail over SMTP) and rules that send events to them, optionally only for
some repositories or workflows.

A channel's text values may be `${VAR}`, replaced from the process environment as provider
`env` values are; its secrets (a Slack webhook URL, a webhook's signing secret, an SMTP
password) must be: the file never holds them, and they are `SecretStr`, never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from bot.config.problems import ConfigProblem, KeyPath, YamlDoc

Event = Literal[
    "ticket_failed",
    "needs_input",
    "in_review",
    "merged",
    "budget_exceeded",
    "runner_offline",
    "deliveries_failing",
]
EVENTS: tuple[str, ...] = get_args(Event)
ChannelKind = Literal["slack", "webhook", "email"]

ChannelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
# Each kind's fields: what it requires, what it may have besides.
_REQUIRED: Mapping[str, tuple[str, ...]] = {
    "slack": ("url",),
    "webhook": ("url", "secret"),
    "email": ("host", "sender", "to"),
}
_OPTIONAL: Mapping[str, tuple[str, ...]] = {
    "slack": (),
    "webhook": (),
    "email": ("port", "security", "username", "password"),
}
# Fields whose value must come from the environment (`${VAR}`), and those never shown.
_FROM_ENVIRONMENT: Mapping[str, tuple[str, ...]] = {
    "slack": ("url",),
    "webhook": ("secret",),
    "email": ("password",),
}
_HIDDEN = frozenset({"url", "secret", "password", "username"})
_URL = re.compile(r"https?://[^\s/]+\S*")
_FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _email_address(value: str) -> str:
    if "@" not in value or any(c in value for c in "\r\n<>,;") or len(value) > 254:
        raise ValueError(f"must be an e-mail address, got {value[:100]!r}")
    return value


def _repo_name(value: str) -> str:
    if not _FULL_NAME.fullmatch(value):
        raise ValueError(f"must be a repository as owner/name, got {value[:100]!r}")
    return value


def _some(values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError("needs at least one")
    return values


Address = Annotated[str, AfterValidator(_email_address)]


class Channel(_Model):
    """Where a notification goes: `slack` (incoming webhook `url`), `webhook` (`url`, and the
    `secret` its body is signed with) or `email` (SMTP `host`, `port`, `from`, `to`,
    `security`, `username`, `password`)."""

    kind: ChannelKind
    url: SecretStr | None = None
    secret: SecretStr | None = None
    host: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    sender: Address | None = Field(default=None, alias="from")
    to: Annotated[tuple[Address, ...], Field(min_length=1)] | None = None
    username: SecretStr | None = None
    password: SecretStr | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Channel:
        given = {"from" if name == "sender" else name for name in self.model_fields_set}
        required = [("from" if f == "sender" else f) for f in _REQUIRED[self.kind]]
        missing = [name for name in required if name not in given]
        if missing:
            raise ValueError(f"a {self.kind} channel needs `{'`, `'.join(missing)}`")
        allowed = {"kind", *required, *_OPTIONAL[self.kind]}
        stray = sorted(given - allowed)
        if stray:
            raise ValueError(f"a {self.kind} channel takes no `{'`, `'.join(stray)}`")
        if self.url is not None and not _URL.fullmatch(self.url.get_secret_value()):
            raise ValueError(f"the {self.kind} channel's `url` must be an http(s) URL")
        if (self.username is None) != (self.password is None):
            raise ValueError("`username` and `password` go together")
        return self

    @property
    def smtp_port(self) -> int:
        """The SMTP port: the one given, else the usual one for `security`."""
        if self.port is not None:
            return self.port
        return {"starttls": 587, "tls": 465, "none": 25}[self.security]


class Rule(_Model):
    """Which events go to which channels; `repos` and `workflows` narrow it (any if empty)."""

    # Not `min_length`: pydantic would also call a list of one bad name empty.
    events: Annotated[tuple[Event, ...], AfterValidator(_some)]
    channels: Annotated[tuple[ChannelName, ...], AfterValidator(_some)]
    repos: tuple[Annotated[str, AfterValidator(_repo_name)], ...] = ()
    workflows: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = ()

    def matches(self, event: str, repo: str | None, workflow: str | None) -> bool:
        """Whether an `event` of `repo` (owner/name) in `workflow` is this rule's."""
        if event not in self.events:
            return False
        if self.repos and (repo is None or repo.casefold() not in _folded(self.repos)):
            return False
        return not self.workflows or workflow in self.workflows


def _folded(names: tuple[str, ...]) -> set[str]:
    return {name.casefold() for name in names}


class Notifications(_Model):
    channels: dict[ChannelName, Channel] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()

    def channels_for(
        self, event: str, repo: str | None = None, workflow: str | None = None
    ) -> list[str]:
        """The channels an event goes to, each once, in the order the rules name them."""
        found: dict[str, None] = {}
        for rule in self.rules:
            if rule.matches(event, repo, workflow):
                found.update(dict.fromkeys(rule.channels))
        return [name for name in found if name in self.channels]


# --- reading: `${VAR}` in channels, secrets hidden, rules naming channels -------------------

Expand = Callable[[str, Mapping[str, str]], tuple[str, list[str]]]
_VARIABLE = re.compile(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def is_secret(path: KeyPath) -> bool:
    """Whether a value at `path` of the control config is a channel's secret (never shown)."""
    return (
        len(path) >= 4
        and path[0] == "notifications"
        and path[1] == "channels"
        and path[3] in _HIDDEN
    )


def interpolate_channels(
    data: dict[str, Any], doc: YamlDoc, env: Mapping[str, str], expand: Expand
) -> list[ConfigProblem]:
    """Replace `${VAR}` in the channels' text values in place; a secret not written as one,
    or a variable that is not set, is a problem."""
    problems: list[ConfigProblem] = []
    section = data.get("notifications")
    if not isinstance(section, dict) or not isinstance(section.get("channels"), dict):
        return problems
    channels = dict(section["channels"])
    for name, channel in list(channels.items()):
        if not isinstance(channel, dict):
            continue
        before = len(problems)
        values = dict(channel)
        kind = values.get("kind")
        for key, value in values.items():
            path = ("notifications", "channels", name, key)
            if not isinstance(value, str):
                continue
            if key in _FROM_ENVIRONMENT.get(str(kind), ()) and not _VARIABLE.search(value):
                problems.append(
                    doc.problem(
                        path,
                        "must come from the environment, not the file: write "
                        f"${{{_suggested(str(name), key)}}} and set that variable",
                    )
                )
                continue
            values[key], missing = expand(value, env)
            problems += [
                doc.problem(
                    path,
                    f"channel {name!r} takes {key} from the environment variable {variable}, "
                    "which is not set",
                )
                for variable in missing
            ]
        channels[name] = values
        if len(problems) > before:
            # Reported already; validating what is left would only add a confusing echo.
            del channels[name]
    data["notifications"] = {**section, "channels": channels}
    return problems


def _suggested(channel: str, key: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", channel).strip("_").upper() or "CHANNEL"
    return f"OPENASE_{stem}_{key.upper()}"


def check_rules(notifications: Notifications, doc: YamlDoc) -> list[ConfigProblem]:
    """Every channel a rule names is defined."""
    problems = []
    for index, rule in enumerate(notifications.rules):
        for position, name in enumerate(rule.channels):
            if name not in notifications.channels:
                known = ", ".join(notifications.channels) or "none"
                problems.append(
                    doc.problem(
                        ("notifications", "rules", index, "channels", position),
                        f"no channel {name!r} under notifications.channels (defined: {known})",
                    )
                )
    return problems
