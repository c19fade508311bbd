"""The process's Linear and Jira clients, built from settings once and shared (their
caches of team states and of who the bot is live as long as the process).

The bot recognises its own changes coming back through webhooks by its identity on each
tracker: the API key's user on Linear, the API token's account on Jira.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.errors import AdapterError
from bot.config.routes import JIRA, LINEAR
from bot.errors import ConfigError
from bot.registry import JiraClient, LinearClient
from bot.settings import Settings

# Outbox lanes of the trackers' effects: writes to one tracker run one at a time like a
# GitHub installation's, and a rate-limited tracker does not hold up the other one.
LINEAR_LANE = -1
JIRA_LANE = -2
LANES = {LINEAR: LINEAR_LANE, JIRA: JIRA_LANE}


@dataclass
class TrackerClients:
    """The configured trackers' clients (None: that tracker is not configured)."""

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


_clients: dict[tuple[object, ...], TrackerClients] = {}


def tracker_clients(settings: Settings) -> TrackerClients:
    """The process's clients for these settings."""
    linear_key = settings.linear_api_key.get_secret_value() if settings.linear_api_key else None
    jira_token = settings.jira_api_token.get_secret_value() if settings.jira_api_token else None
    jira_url = str(settings.jira_url).rstrip("/") if settings.jira_url else None
    key = (str(settings.linear_api_url), linear_key, jira_url, settings.jira_email, jira_token)
    found = _clients.get(key)
    if found is None:
        found = TrackerClients(
            linear=LinearClient(linear_key, url=str(settings.linear_api_url))
            if linear_key
            else None,
            jira=JiraClient(jira_url, settings.jira_email, jira_token)
            if jira_url and jira_token
            else None,
        )
        _clients[key] = found
    return found


def forget_tracker_clients() -> None:
    """Drop the cached clients (tests, key rotation)."""
    _clients.clear()


async def close_tracker_clients() -> None:
    for clients in list(_clients.values()):
        await clients.aclose()
    _clients.clear()
