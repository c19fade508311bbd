"""Process settings, read from `OPENASE_*` environment variables (DESIGN §5)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

DEFAULT_DATA_DIR = Path("~/.local/share/openase")


class Settings(BaseSettings):
    """Everything the control plane reads from its environment; built once at start."""

    model_config = SettingsConfigDict(
        env_prefix="OPENASE_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 2080
    config: Path | None = None
    # Where people reach this deployment (links in status comments and check runs);
    # default: http://HOST:PORT.
    public_url: AnyHttpUrl | None = None
    # A smee.io-style channel (server-sent events) relaying GitHub's webhooks to a machine
    # GitHub cannot reach; `up` and `serve` consume it (bot/intake/relay.py).
    webhook_proxy_url: AnyHttpUrl | None = None
    # The server the `openase harness|skill` commands talk to; default: this machine's own
    # (base_url).
    url: AnyHttpUrl | None = None
    admin_token: SecretStr | None = None
    # Who may read the web pages: "public", or "login" (signed-in people only). Default:
    # "login" when OPENASE_ADMIN_TOKEN is set (the API needs it then), else "public".
    web_reads: Literal["public", "login"] | None = None
    # Signs the web page's session cookies. Default: derived from OPENASE_ADMIN_TOKEN, else
    # random per process (sessions then end with a restart).
    session_secret: SecretStr | None = None
    # GitHub sign-in for the web page (the App's OAuth client id and secret): people with
    # write access to a repository of the installation may then write.
    github_client_id: str | None = None
    github_client_secret: SecretStr | None = None
    # `openase up` runs a runner for this machine under this name (default: the host name).
    machine: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")] | None = None
    runner_max_runs: Annotated[int, Field(ge=1, le=64)] = 2
    # The CPU niceness `up`'s runner and its agents run at (`openase runner --nice`): the
    # control plane on the same machine keeps answering while agents build and test. The
    # lowest: at 10, 200 runs' agents still held the engine tick to p99 366-913 ms under
    # `make bench-scale`; at 19, 155 ms (README, Scale).
    runner_nice: Annotated[int, Field(ge=0, le=19)] = 19
    # Paths `up`'s runner shows read-only in the runs' sandbox (`openase runner
    # --sandbox-read`), separated by the OS path separator (":").
    sandbox_read: str = ""

    def sandbox_read_paths(self) -> tuple[Path, ...]:
        parts = self.sandbox_read.split(os.pathsep)
        return tuple(Path(part).expanduser().resolve() for part in parts if part)

    github_app_id: Annotated[int, Field(gt=0)] | None = None
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_api_url: AnyHttpUrl = AnyHttpUrl("https://api.github.com")
    # GitHub's web host, where Apps are registered and people sign in. Default: github.com
    # for api.github.com, else the API URL without `/api/v3` (GitHub Enterprise Server).
    github_web_url: AnyHttpUrl | None = None
    # The outbox's budget of content-creating requests (POST, PATCH, PUT, DELETE, GraphQL
    # mutations) per installation, shared by every worker: GitHub's secondary rate limits
    # allow 80 a minute and 500 an hour (bot/effects/pacing.py).
    github_writes_per_minute: Annotated[int, Field(gt=0)] = 80
    github_writes_per_hour: Annotated[int, Field(gt=0)] = 500

    linear_api_key: SecretStr | None = None
    linear_webhook_secret: SecretStr | None = None
    linear_api_url: AnyHttpUrl = AnyHttpUrl("https://api.linear.app/graphql")

    jira_url: AnyHttpUrl | None = None
    jira_email: str | None = None
    jira_api_token: SecretStr | None = None
    jira_webhook_secret: SecretStr | None = None
    # How often the worker reads back GitHub, Linear and Jira issues changed while webhooks
    # were missed (bot/intake/reconcile); 0 turns it off.
    reconcile_minutes: Annotated[int, Field(ge=0, le=60)] = 10

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("url", "webhook_proxy_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def api_url(self) -> str:
        """The GitHub REST base URL without a trailing slash."""
        return str(self.github_api_url).rstrip("/")

    @property
    def web_url(self) -> str:
        """GitHub's web host without a trailing slash."""
        if self.github_web_url is not None:
            return str(self.github_web_url).rstrip("/")
        parts = urlsplit(self.api_url)
        if parts.netloc == "api.github.com":
            return "https://github.com"
        path = parts.path.removesuffix("/api/v3").rstrip("/")
        return f"{parts.scheme}://{parts.netloc}{path}"

    @property
    def base_url(self) -> str:
        """The deployment's own URL without a trailing slash, for links we post."""
        if self.public_url is not None:
            return str(self.public_url).rstrip("/")
        return f"http://{self.host}:{self.port}"

    def github_private_key_pem(self) -> str | None:
        """The App's private key, from the variable or the file it names."""
        if self.github_private_key is not None:
            # Keys pasted into env files often carry literal "\n" sequences.
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            try:
                return self.github_private_key_path.expanduser().read_text()
            except OSError as exc:
                raise ConfigError(
                    f"OPENASE_GITHUB_PRIVATE_KEY_PATH: cannot read {self.github_private_key_path}: "
                    f"{exc.strerror}"
                ) from exc
        return None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts field overrides
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            problems.append(f"OPENASE_{field.upper()}: {err['msg']}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems)) from None
