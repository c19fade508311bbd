"""The App registered on the setup page, kept in the data dir: read back at start, the
environment winning group by group; a damaged record named with its fix."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config.github_app import (
    APP_FILE,
    adopt_app,
    app_from_environment,
    save_app,
    stored_app,
    with_stored_app,
)
from bot.errors import ConfigError
from bot.registry import RegisteredApp
from bot.servers.services import webhook_secret
from bot.settings import Settings
from tests.support.helpers import test_private_key as app_private_key

API = "https://ghe.example.test/api/v3"


def registered(app_id: int = 31, *, hook: bool = True) -> RegisteredApp:
    return RegisteredApp(
        id=app_id,
        slug=f"openase-{app_id}",
        name=f"OpenASE {app_id}",
        html_url=f"https://ghe.example.test/apps/openase-{app_id}",
        owner="octocat",
        client_id=f"Iv1.client{app_id}",
        private_key=app_private_key(),
        webhook_secret=f"hook-secret-{app_id}" if hook else None,
        client_secret=f"client-secret-{app_id}",
    )


def settings_in(data_dir: Path, **environment: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, github_api_url=API, **environment)  # type: ignore[arg-type]  # field overrides


def test_a_saved_app_is_private_and_read_back_whole(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "data")
    path = save_app(settings, registered())
    assert path == tmp_path / "data" / APP_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # nothing left aside
    assert stored_app(settings) == registered()
    assert "hook-secret" not in repr(stored_app(settings))


def test_with_no_environment_the_stored_app_is_used_whole(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    save_app(settings, registered())
    used = with_stored_app(settings)
    assert used.github_app_id == 31
    assert used.github_private_key_pem() == app_private_key()
    assert used.github_client_id == "Iv1.client31"
    assert used.github_client_secret == SecretStr("client-secret-31")
    assert used.github_webhook_secret == SecretStr("hook-secret-31")
    assert not app_from_environment(used)


def test_the_environment_wins_group_by_group(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text(app_private_key())
    settings = settings_in(
        tmp_path,
        github_app_id=7,
        github_private_key_path=key,
        github_webhook_secret=SecretStr("from-env"),
    )
    save_app(settings, registered())
    used = with_stored_app(settings)
    assert used.github_app_id == 7
    assert used.github_private_key is None  # never the stored key with another App's id
    assert used.github_webhook_secret == SecretStr("from-env")
    assert used.github_client_id == "Iv1.client31"  # the environment set no sign-in
    assert app_from_environment(used)


def test_an_id_without_a_key_in_the_environment_is_not_paired_with_the_stored_key(
    tmp_path: Path,
) -> None:
    settings = settings_in(tmp_path, github_app_id=7)
    save_app(settings, registered())
    used = with_stored_app(settings)
    assert used.github_app_id == 7
    assert used.github_private_key is None


def test_a_new_app_replaces_what_the_old_one_and_up_had_set(tmp_path: Path) -> None:
    generated, _ = webhook_secret(tmp_path)
    settings = settings_in(tmp_path, github_webhook_secret=SecretStr(generated))
    first = adopt_app(settings, registered(31), previous=None)
    assert first.github_webhook_secret == SecretStr("hook-secret-31")  # not up's any more
    second = adopt_app(first, registered(32), previous=registered(31))
    assert second.github_app_id == 32
    assert second.github_client_id == "Iv1.client32"
    assert second.github_webhook_secret == SecretStr("hook-secret-32")


def test_an_app_without_a_webhook_leaves_the_secret_alone(tmp_path: Path) -> None:
    settings = settings_in(tmp_path, github_webhook_secret=SecretStr("up-made-this"))
    used = adopt_app(settings, registered(hook=False), previous=None)
    assert used.github_webhook_secret == SecretStr("up-made-this")
    assert used.github_app_id == 31


def test_an_app_of_another_github_is_not_used(tmp_path: Path) -> None:
    save_app(settings_in(tmp_path), registered())
    elsewhere = Settings(_env_file=None, data_dir=tmp_path, github_api_url="https://api.github.com")
    assert stored_app(elsewhere) is None
    assert with_stored_app(elsewhere).github_app_id is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a GitHub App record"),
        ("[]", "not a GitHub App record"),
        ('{"id": "31"}', "'id' must be a positive integer"),
        ('{"id": 31, "slug": ""}', "'slug' must be a non-empty string"),
    ],
)
def test_a_damaged_record_is_named_with_its_fix(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / APP_FILE).write_text(content)
    with pytest.raises(ConfigError) as raised:
        with_stored_app(settings_in(tmp_path))
    message = str(raised.value)
    assert str(tmp_path / APP_FILE) in message
    assert problem in message
    assert "register the App again on the setup page (/setup)" in message
