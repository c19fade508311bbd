"""The control config's `notifications:`: channels with secrets from the environment, rules
with repository and workflow filters, and a precise problem for each mistake."""

from __future__ import annotations

import textwrap

import pytest

from bot.config.control import ControlConfig, parse_control_config
from bot.config.problems import ConfigProblem

SLACK_URL = "https://hooks.slack.com/services/T000/B000/not-a-real-token"
HOOK_SECRET = "whsec-not-a-real-secret-42"
SMTP_PASSWORD = "smtp-not-a-real-password"
ENV = {"SLACK_URL": SLACK_URL, "HOOK_SECRET": HOOK_SECRET, "SMTP_PASSWORD": SMTP_PASSWORD}

EXAMPLE = """\
providers: {script: {cli: command, argv: [python3, agent.py]}}
notifications:
  channels:
    team:
      kind: slack
      url: ${SLACK_URL}
    audit:
      kind: webhook
      url: https://hooks.example.com/openase
      secret: ${HOOK_SECRET}
    oncall:
      kind: email
      host: smtp.example.com
      from: openase@example.com
      to: [oncall@example.com]
      username: openase
      password: ${SMTP_PASSWORD}
  rules:
    - events: [ticket_failed, needs_input]
      channels: [team, oncall]
    - events: [merged, in_review]
      channels: [audit]
      repos: [acme/api]
    - events: [ticket_failed]
      channels: [team]
      workflows: [nightly]
"""


def parse(text: str, env: dict[str, str] | None = None) -> ControlConfig | list[ConfigProblem]:
    return parse_control_config(
        textwrap.dedent(text), file="control.yml", environ=ENV | (env or {})
    )


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    result = parse(text, env)
    assert isinstance(result, list), "expected problems"
    return [str(problem) for problem in result]


def test_the_example_reads_with_secrets_from_the_environment() -> None:
    config = parse(EXAMPLE)
    assert isinstance(config, ControlConfig)
    channels = config.notifications.channels
    assert channels["team"].url is not None
    assert channels["team"].url.get_secret_value() == SLACK_URL
    assert channels["audit"].secret is not None
    assert channels["audit"].secret.get_secret_value() == HOOK_SECRET
    assert channels["oncall"].sender == "openase@example.com"
    assert channels["oncall"].smtp_port == 587  # STARTTLS unless told otherwise
    assert channels["oncall"].security == "starttls"
    # Secrets never show in a repr (logged configs, tracebacks).
    shown = repr(config)
    assert SLACK_URL not in shown
    assert HOOK_SECRET not in shown
    assert SMTP_PASSWORD not in shown


@pytest.mark.parametrize(
    ("event", "repo", "workflow", "expected"),
    [
        ("ticket_failed", "acme/api", "coder", ["team", "oncall"]),
        ("ticket_failed", "acme/web", "nightly", ["team", "oncall"]),  # each channel once
        ("merged", "acme/api", "coder", ["audit"]),
        ("merged", "ACME/Api", "coder", ["audit"]),  # GitHub compares names case-insensitively
        ("merged", "acme/web", "coder", []),  # the rule is for acme/api only
        ("in_review", None, None, []),
        ("runner_offline", None, None, []),
    ],
)
def test_rules_pick_channels_by_event_repository_and_workflow(
    event: str, repo: str | None, workflow: str | None, expected: list[str]
) -> None:
    config = parse(EXAMPLE)
    assert isinstance(config, ControlConfig)
    assert config.notifications.channels_for(event, repo, workflow) == expected


def test_no_notifications_section_means_none_sent() -> None:
    config = parse("providers: {script: {cli: command, argv: [x]}}\n")
    assert isinstance(config, ControlConfig)
    assert config.notifications.channels_for("ticket_failed", "acme/api", "coder") == []


def test_a_secret_written_into_the_file_is_refused_without_being_shown() -> None:
    found = problems(
        """\
        providers: {script: {cli: command, argv: [x]}}
        notifications:
          channels:
            team: {kind: slack, url: "https://hooks.slack.com/services/T/B/literal-token"}
            audit: {kind: webhook, url: "https://x.example/h", secret: literal-secret}
        """
    )
    assert found == [
        "control.yml, line 4: notifications.channels.team.url: must come from the environment, "
        "not the file: write ${OPENASE_TEAM_URL} and set that variable",
        "control.yml, line 5: notifications.channels.audit.secret: must come from the "
        "environment, not the file: write ${OPENASE_AUDIT_SECRET} and set that variable",
    ]
    assert not any("literal" in line for line in found)


def test_an_unset_variable_is_named() -> None:
    found = problems(
        """\
        providers: {script: {cli: command, argv: [x]}}
        notifications:
          channels:
            team: {kind: slack, url: "${SLACK_HOOK}"}
        """
    )
    assert found == [
        "control.yml, line 4: notifications.channels.team.url: channel 'team' takes url from "
        "the environment variable SLACK_HOOK, which is not set"
    ]


def test_each_mistake_gets_a_precise_problem() -> None:
    found = problems(
        """\
        providers: {script: {cli: command, argv: [x]}}
        notifications:
          channels:
            team: {kind: slack}
            mail: {kind: email, host: smtp.example.com, from: nobody, to: [a@example.com]}
            odd: {kind: slack, url: "${SLACK_URL}", to: [a@example.com]}
            pager: {kind: sms, url: "${SLACK_URL}"}
            notaurl: {kind: webhook, url: "${HOOK_SECRET}", secret: "${HOOK_SECRET}"}
          rules:
            - {events: [ticket_failed, exploded], channels: [team]}
            - {events: [], channels: [team]}
            - {events: [merged], channels: [team], repos: [not-a-repo]}
        """
    )
    assert found == [
        "control.yml, line 4: notifications.channels.team: a slack channel needs `url`",
        "control.yml, line 5: notifications.channels.mail.from: must be an e-mail address, "
        "got 'nobody'",
        "control.yml, line 6: notifications.channels.odd: a slack channel takes no `to`",
        "control.yml, line 7: notifications.channels.pager.kind: must be 'slack', 'webhook' or "
        "'email', got 'sms'",
        "control.yml, line 8: notifications.channels.notaurl: the webhook channel's `url` must "
        "be an http(s) URL",
        "control.yml, line 10: notifications.rules[0].events[1]: must be 'ticket_failed', "
        "'needs_input', 'in_review', 'merged', 'budget_exceeded', 'runner_offline' or "
        "'deliveries_failing', got 'exploded'",
        "control.yml, line 11: notifications.rules[1].events: needs at least one",
        "control.yml, line 12: notifications.rules[2].repos[0]: must be a repository as "
        "owner/name, got 'not-a-repo'",
    ]
    assert not any(HOOK_SECRET in line or SLACK_URL in line for line in found)


def test_a_rule_naming_an_undefined_channel_is_a_problem() -> None:
    found = problems(
        """\
        providers: {script: {cli: command, argv: [x]}}
        notifications:
          channels:
            team: {kind: slack, url: "${SLACK_URL}"}
          rules:
            - {events: [merged], channels: [team, ghost]}
        """
    )
    assert found == [
        "control.yml, line 6: notifications.rules[0].channels[1]: no channel 'ghost' under "
        "notifications.channels (defined: team)"
    ]
