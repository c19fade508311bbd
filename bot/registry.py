"""The one module of `bot` that imports the concrete adapters (DESIGN §2 import rules)."""

from __future__ import annotations

from adapters.base import WebhookParser
from adapters.github.client import CachedPage, GitHubApp, Page
from adapters.github.events import parse as parse_github
from adapters.github.verify import SIGNATURE_HEADER as GITHUB_SIGNATURE_HEADER
from adapters.github.verify import signature_valid as github_signature_valid
from adapters.jira.client import JiraClient, NoTransition
from adapters.jira.events import parse as parse_jira
from adapters.jira.events import ticket_from_issue as jira_ticket_from_issue
from adapters.jira.verify import DELIVERY_HEADER as JIRA_DELIVERY_HEADER
from adapters.jira.verify import SIGNATURE_HEADER as JIRA_SIGNATURE_HEADER
from adapters.jira.verify import signature_valid as jira_signature_valid
from adapters.jira.verify import token_valid as jira_token_valid
from adapters.linear.client import LinearClient
from adapters.linear.events import parse as parse_linear
from adapters.linear.events import ticket_from_issue as linear_ticket_from_issue
from adapters.linear.verify import DELIVERY_HEADER as LINEAR_DELIVERY_HEADER
from adapters.linear.verify import EVENT_HEADER as LINEAR_EVENT_HEADER
from adapters.linear.verify import SIGNATURE_HEADER as LINEAR_SIGNATURE_HEADER
from adapters.linear.verify import TIMESTAMP_FIELD as LINEAR_TIMESTAMP_FIELD
from adapters.linear.verify import signature_valid as linear_signature_valid
from adapters.linear.verify import timestamp_fresh as linear_timestamp_fresh

# The GitHub App client and its paging types, for the GitHub-only parts of bot (backfill);
# the Linear and Jira clients and issue parsers, for their tickets' effects and backfill.
__all__ = [
    "GITHUB_SIGNATURE_HEADER",
    "JIRA_DELIVERY_HEADER",
    "JIRA_SIGNATURE_HEADER",
    "LINEAR_DELIVERY_HEADER",
    "LINEAR_EVENT_HEADER",
    "LINEAR_SIGNATURE_HEADER",
    "LINEAR_TIMESTAMP_FIELD",
    "CachedPage",
    "GitHubApp",
    "JiraClient",
    "LinearClient",
    "NoTransition",
    "Page",
    "github_signature_valid",
    "jira_signature_valid",
    "jira_ticket_from_issue",
    "jira_token_valid",
    "linear_signature_valid",
    "linear_ticket_from_issue",
    "linear_timestamp_fresh",
    "parser_for",
]


def parser_for(source: str) -> WebhookParser:
    """The webhook parser of a tracker, by the `source` a delivery was stored under."""
    parsers: dict[str, WebhookParser] = {
        "github": parse_github,
        "linear": parse_linear,
        "jira": parse_jira,
    }
    try:
        return parsers[source]
    except KeyError:
        raise LookupError(f"no webhook parser for source {source!r}") from None
