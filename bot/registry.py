"""The one module of `bot` that imports the concrete adapters (DESIGN §2 import rules): their
webhook parsers and verifiers, and the process's API clients (`Clients`, held by `Deps`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters.base import WebhookParser
from adapters.errors import AdapterError
from adapters.github.client import CachedPage, GitHubApp, Page
from adapters.github.events import parse as parse_github
from adapters.github.manifest import RegisteredApp, convert_manifest
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
from adapters.notify import mail as notify_mail
from adapters.notify import slack as notify_slack
from adapters.notify import webhook as notify_webhook
from bot.errors import ConfigError
from bot.settings import Settings

LINEAR = "linear"
JIRA = "jira"

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
    "Clients",
    "GitHubApp",
    "JiraClient",
    "LinearClient",
    "NoTransition",
    "Page",
    "RegisteredApp",
    "TrackerClients",
    "convert_manifest",
    "github_signature_valid",
    "jira_signature_valid",
    "jira_ticket_from_issue",
    "jira_token_valid",
    "linear_signature_valid",
    "linear_ticket_from_issue",
    "linear_timestamp_fresh",
    "notify_mail",
    "notify_slack",
    "notify_webhook",
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


# --- the process's API clients ------------------------------------------------------------------


@dataclass
class TrackerClients:
    """The configured trackers' clients (None: that tracker is not configured). The bot
    recognises its own changes coming back through webhooks by its identity on each
    tracker: the API key's user on Linear, the API token's account on Jira."""

    linear: LinearClient | None = None
    jira: JiraClient | None = None

    def linear_client(self) -> LinearClient:
        if self.linear is None:
            raise ConfigError("writing to Linear needs OPENASE_LINEAR_API_KEY")
        return self.linear

    def jira_client(self) -> JiraClient:
        if self.jira is None:
            raise ConfigError(
                "writing to Jira needs OPENASE_JIRA_URL and OPENASE_JIRA_API_TOKEN "
                "(and OPENASE_JIRA_EMAIL on Jira Cloud)"
            )
        return self.jira

    def writable(self, source: str) -> bool:
        """Whether the bot can write to that tracker (its tickets are worked on only then)."""
        return (
            self.linear if source == LINEAR else self.jira if source == JIRA else None
        ) is not None

    async def is_self(self, source: str, actor_id: str | None) -> bool:
        """Whether the tracker says the bot itself did it (False when it cannot tell)."""
        if not actor_id:
            return False
        try:
            if source == LINEAR and self.linear is not None:
                return actor_id == await self.linear.viewer_id()
            if source == JIRA and self.jira is not None:
                return actor_id == await self.jira.myself_id()
        except AdapterError:
            return False  # treated as a person: at worst the engine re-publishes its state
        return False

    async def aclose(self) -> None:
        for client in (self.linear, self.jira):
            if client is not None:
                await client.aclose()


@dataclass
class Clients:
    """The API clients of one process, built on first use and shared by all its jobs: the
    GitHub App's installation tokens and rate-limit state, and the trackers' caches of team
    states and of who the bot is, live in them. Keyed by the settings they come from, so a
    changed key or URL gets new clients."""

    _apps: dict[tuple[str, int, str], GitHubApp] = field(default_factory=dict)
    _trackers: dict[tuple[object, ...], TrackerClients] = field(default_factory=dict)

    def github_app(self, settings: Settings) -> GitHubApp:
        """The GitHub App client for these settings (ConfigError without an App)."""
        key = settings.github_private_key_pem()
        if settings.github_app_id is None or not key:
            raise ConfigError(
                "GitHub API access needs OPENASE_GITHUB_APP_ID and OPENASE_GITHUB_PRIVATE_KEY "
                "(or OPENASE_GITHUB_PRIVATE_KEY_PATH)"
            )
        cache_key = (settings.api_url, settings.github_app_id, key)
        app = self._apps.get(cache_key)
        if app is None:
            try:
                app = GitHubApp(
                    api_url=settings.api_url, app_id=settings.github_app_id, private_key=key
                )
            except AdapterError as exc:
                raise ConfigError(f"OPENASE_GITHUB_PRIVATE_KEY: {exc}") from exc
            self._apps[cache_key] = app
        return app

    def trackers(self, settings: Settings) -> TrackerClients:
        """Linear's and Jira's clients for these settings (None where not configured)."""
        linear_key = settings.linear_api_key.get_secret_value() if settings.linear_api_key else None
        jira_token = settings.jira_api_token.get_secret_value() if settings.jira_api_token else None
        jira_url = str(settings.jira_url).rstrip("/") if settings.jira_url else None
        key = (str(settings.linear_api_url), linear_key, jira_url, settings.jira_email, jira_token)
        found = self._trackers.get(key)
        if found is None:
            found = TrackerClients(
                linear=LinearClient(linear_key, url=str(settings.linear_api_url))
                if linear_key
                else None,
                jira=JiraClient(jira_url, settings.jira_email, jira_token)
                if jira_url and jira_token
                else None,
            )
            self._trackers[key] = found
        return found

    async def aclose(self) -> None:
        """Close every client's connections (at shutdown)."""
        for app in list(self._apps.values()):
            await app.aclose()
        for trackers in list(self._trackers.values()):
            await trackers.aclose()
        self._trackers.clear()
