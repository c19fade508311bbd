"""The `openase` command line: refusals are one clear line and exit status 2.

Most cases call `bot.processes.cli.main` in-process over a clean `OPENASE_*` environment; they all
stop before logging is configured or anything is started. One runs the installed console
script, the way a user meets it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.config.manifest import MANIFEST_KEYS
from bot.processes.cli import main

DATABASE_URL = "postgresql://openase:pw@db.invalid:5432/openase"
REDIS_URL = "redis://redis.invalid:6379/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OPENASE_* from the caller's environment; a data dir nobody runs `up` in."""
    for name in list(os.environ):
        if name.startswith("OPENASE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENASE_DATA_DIR", str(tmp_path / "data"))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OPENASE_PORT", "eighty"),
        ("OPENASE_PORT", "70000"),
        ("OPENASE_DATABASE_URL", "mysql://db/openase"),
        ("OPENASE_REDIS_URL", "memcached://cache"),
        ("OPENASE_GITHUB_APP_ID", "-3"),
        ("OPENASE_GITHUB_API_URL", "not a url"),
        ("OPENASE_JIRA_URL", "jira.example.org"),
    ],
)
@pytest.mark.parametrize("command", ["up", "serve", "worker", "migrate"])
def test_malformed_setting_is_named_and_exits_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main([command]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert variable in err
    assert value not in err  # values may be secrets; the message names, never echoes
    assert "Traceback" not in err


def test_console_script_reports_settings_errors_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "openase"
    done = subprocess.run(
        [script, "serve"],
        env={"PATH": "/usr/bin:/bin", "OPENASE_PORT": "nope", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("openase: invalid settings:")
    assert "OPENASE_PORT" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_to_start_without_a_webhook_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENASE_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("OPENASE_REDIS_URL", REDIS_URL)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "OPENASE_GITHUB_WEBHOOK_SECRET is not set" in err


@pytest.mark.parametrize(
    ("command", "present", "named", "not_named"),
    [
        ("serve", {}, ["OPENASE_DATABASE_URL", "OPENASE_REDIS_URL"], []),
        ("serve", {"OPENASE_DATABASE_URL": DATABASE_URL}, ["OPENASE_REDIS_URL"], ["DATABASE"]),
        ("worker", {"OPENASE_REDIS_URL": REDIS_URL}, ["OPENASE_DATABASE_URL"], ["REDIS"]),
        ("migrate", {"OPENASE_REDIS_URL": REDIS_URL}, ["OPENASE_DATABASE_URL"], ["REDIS"]),
    ],
)
def test_production_commands_need_the_service_urls(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    present: dict[str, str],
    named: list[str],
    not_named: list[str],
) -> None:
    monkeypatch.setenv("OPENASE_GITHUB_WEBHOOK_SECRET", "s3cret-for-this-test")
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    assert main([command]) == 2
    err = capsys.readouterr().err
    for name in named:
        assert name in err
    for fragment in not_named:
        assert fragment not in err
    assert "openase up" in err  # points at the command that embeds them


@pytest.mark.parametrize(
    "repo",
    [
        "octocat",
        "octocat/hello/world",
        "octocat-/x",
        "octo--cat/x",
        "oct@cat/x",
        "octocat/",
        "octocat/..",
    ],
)
def test_sync_rejects_a_malformed_repository(capsys: pytest.CaptureFixture[str], repo: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["sync", repo])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "expected OWNER/REPO" in err
    assert repr(repo) in err


def test_sync_without_urls_or_a_running_up_says_what_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["sync", "octocat/Hello-World"]) == 2
    err = capsys.readouterr().err
    assert "OPENASE_DATABASE_URL and OPENASE_REDIS_URL are not set" in err
    assert f"no `openase up` is running with data dir {tmp_path / 'data'}" in err


def test_app_manifest_prints_githubs_manifest_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "manifest", "--url", "https://bot.example.org/"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert set(manifest) <= MANIFEST_KEYS
    assert manifest["name"] == "OpenASE"
    assert manifest["public"] is False
    assert manifest["url"] == "https://bot.example.org/"
    assert manifest["hook_attributes"] == {
        "url": "https://bot.example.org/webhooks/github",
        "active": True,
    }
    assert manifest["default_permissions"]["issues"] == "write"
    assert "issues" in manifest["default_events"]


def test_app_manifest_without_url_leaves_the_webhook_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["app", "manifest"]) == 0
    out, err = capsys.readouterr()
    assert "hook_attributes" not in json.loads(out)
    assert "--url" in err


def test_app_manifest_refuses_a_url_that_is_not_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["app", "manifest", "--url", "bot.example.org"]) == 2
    assert "--url must be an http(s) URL" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in (
        "up", "serve", "worker", "migrate", "sync", "runner", "try", "harness", "skill", "app",
    ):  # fmt: skip
        assert f"    {command} " in out


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["up", "--help"], "OPENASE_DATA_DIR"),
        (["serve", "--help"], "OPENASE_GITHUB_WEBHOOK_SECRET"),
        (["worker", "--help"], "OPENASE_REDIS_URL"),
        (["migrate", "--help"], "OPENASE_DATABASE_URL"),
        (["sync", "--help"], "OWNER/REPO"),
        (["app", "manifest", "--help"], "--url BASE_URL"),
        (["runner", "--help"], "--machine NAME"),
        (["try", "--help"], "--agent {claude_code,codex,gemini,command}"),
    ],
)
def test_each_command_has_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], mentions: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 0
    assert mentions in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "usage: openase" in capsys.readouterr().err


def test_up_keeps_one_webhook_secret_in_the_data_dir(tmp_path: Path) -> None:
    from bot.servers.services import webhook_secret

    secret, path = webhook_secret(tmp_path / "data")
    assert len(secret) >= 40
    assert path.stat().st_mode & 0o777 == 0o600
    assert webhook_secret(tmp_path / "data") == (secret, path)  # reused, not regenerated
    path.chmod(0o644)
    assert webhook_secret(tmp_path / "data")[0] == secret
    assert path.stat().st_mode & 0o777 == 0o600  # widened by someone: tightened again
    path.write_text("")
    renewed, _ = webhook_secret(tmp_path / "data")
    assert renewed
    assert renewed != secret
    assert sorted(p.name for p in path.parent.iterdir()) == ["webhook-secret"]  # nothing aside


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "http://127.0.0.1:2080"),
        ("0.0.0.0", "http://127.0.0.1:2080"),  # noqa: S104  # a setting under test, not bound
        ("::", "http://[::1]:2080"),
        ("::1", "http://[::1]:2080"),
        ("bot.internal", "http://bot.internal:2080"),
    ],
)
def test_printed_urls_are_ones_a_browser_on_this_machine_can_open(host: str, shown: str) -> None:
    from bot.processes.lifecycle import base_url

    assert base_url(host, 2080) == shown


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["runner", "--machine", "bad name"], "argument --machine: expected 1-63 letters"),
        (["runner", "--machine", "m", "--max-runs", "0"], "argument --max-runs: expected a whole"),
        (["runner", "--machine", "m", "--labels", "ok,b@d"], "label 'b@d'"),
        (["try", "--repo", ".", "--agent", "aider", "x"], "argument --agent: invalid choice"),
        (["try", "--repo", ".", "--agent", "command", "--stall-seconds", "-1", "x"], "positive"),
    ],
)
def test_runner_and_try_refuse_bad_arguments(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (["--env", "NOT VALID=1"], "--env 'NOT VALID': expected KEY=VALUE"),
        (["--hook", "on_finish=true"], "--hook 'on_finish=true': expected PHASE=COMMAND"),
        (["--harness", "/nonexistent/h.md"], "--harness /nonexistent/h.md: No such file"),
        (["--harness", "{h}"], "--harness"),
        (["--skill", "/nonexistent/skill"], "--skill /nonexistent/skill"),
    ],
)
def test_try_names_the_bad_option(
    extra: list[str], complaint: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.git_repos import git

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "-m", "initial")
    if extra == ["--harness", "{h}"]:
        harness = tmp_path / "broken.md"
        harness.write_text("line one\n{{ ticket.key \n")
        extra = ["--harness", str(harness)]
    code = main(["try", "--repo", str(repo), "--agent", "command", "--argv", "true", *extra, "x"])
    assert code == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err


def test_try_refuses_a_directory_that_is_not_a_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["try", "--repo", str(tmp_path), "--agent", "command", "--argv", "true", "x"])
    assert code == 2
    assert f"--repo {tmp_path}: git rev-parse" in capsys.readouterr().err


def test_every_harness_and_skill_subcommand_has_a_handler() -> None:
    import argparse

    from bot.harness.commands import COMMANDS
    from bot.processes.cli import build_parser

    parser = build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )  # argparse keeps its subcommands only here
    handlers = set()
    for group in ("harness", "skill"):
        sub = commands.choices[group]
        subcommands = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction))
        handlers |= {p.get_default("handler") for p in subcommands.choices.values()}
    assert None not in handlers
    assert handlers <= set(COMMANDS)


@pytest.mark.slow
def test_a_runner_started_without_redis_waits_for_it_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    # A runner needs no supervisor: Redis away at start is an outage to wait out (said
    # once), not a reason to exit; a stop signal still stops it at once.
    env = {
        **os.environ,
        "OPENASE_REDIS_URL": "redis://127.0.0.1:9/0",  # discard port: closed
        "OPENASE_DATA_DIR": str(tmp_path),
    }
    command = [str(Path(sys.executable).parent / "openase"), "runner", "--machine", "m1"]
    with subprocess.Popen(
        [*command, "--workspace-root", str(tmp_path / "ws")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as runner:
        try:
            deadline = time.monotonic() + 30
            assert runner.stdout is not None
            seen = b""
            while b"redis_unavailable" not in seen and time.monotonic() < deadline:
                seen += runner.stdout.readline()
            time.sleep(3)  # several tries later, still waiting, still said once
            assert runner.poll() is None
            runner.send_signal(signal.SIGTERM)
            out, _ = runner.communicate(timeout=15)
        finally:
            runner.kill()
    text = (seen + out).decode()
    assert runner.returncode == 0, text
    assert text.count("redis_unavailable") == 1
    assert "Traceback" not in text
