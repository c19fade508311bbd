"""The `openase` command line: one entry point for every process of the control plane.

This module builds the parser; bot/processes/commands.py runs the command chosen, importing
what it runs only then, so `--help` and `app manifest` answer at once. Every check that can
refuse a start (settings, URLs, webhook secret) runs before logging is configured and
before anything is started: a refusal is one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.config.names import is_repository
from bot.errors import ConfigError, OpenaseError
from bot.harness import cli as harness_cli
from bot.processes import schedule_cli
from bot.processes.commands import dispatch
from runner.priority import NICEST

DESCRIPTION = """\
OpenASE: a GitHub App that mirrors issues into Postgres and drives them through a workflow.

Settings come from OPENASE_* environment variables (see README.md); a malformed one stops
the command with a message naming it (exit status 2)."""

EPILOG = """\
local use:   openase up                 (embedded Postgres and Redis unless URLs are set)
production:  openase migrate; openase serve; openase worker
             (need OPENASE_DATABASE_URL and OPENASE_REDIS_URL)"""


def repository(value: str) -> str:
    """argparse type for OWNER/REPO (or `linear:TEAM` / `jira:PROJECT` for `sync`)."""
    tracker, colon, key = value.partition(":")
    if colon and tracker in ("linear", "jira"):
        if not re.fullmatch(r"[A-Za-z0-9_]{1,64}", key):
            raise argparse.ArgumentTypeError(f"expected {tracker}:KEY (e.g. {tracker}:ENG)")
        return value
    if not is_repository(value):
        raise argparse.ArgumentTypeError(
            f"expected OWNER/REPO (for example octocat/hello-world), got {value!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openase",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "up",
        help="web app, control worker and runner for one machine, supervised",
        description=(
            "Run the web app, the control worker and this machine's runner as child processes, "
            "each started again if it ends, all stopped in order on SIGINT/SIGTERM. Without "
            "OPENASE_DATABASE_URL / OPENASE_REDIS_URL, start embedded PostgreSQL and Redis "
            "under OPENASE_DATA_DIR (default ~/.local/share/openase). Migrates, then serves on "
            "OPENASE_HOST:OPENASE_PORT (default 127.0.0.1:2080). Without "
            "OPENASE_GITHUB_WEBHOOK_SECRET, generates one, keeps it in the data dir and prints it."
        ),
    )
    commands.add_parser(
        "serve",
        help="web app only: webhooks, JSON API, /healthz, /metrics",
        description=(
            "Serve the web app (stateless; run as many as you like). Needs OPENASE_DATABASE_URL, "
            "OPENASE_REDIS_URL and OPENASE_GITHUB_WEBHOOK_SECRET."
        ),
    )
    commands.add_parser(
        "worker",
        help="control worker only: ingest deliveries, engine, outbox, backfill",
        description="Run the arq control worker. Needs OPENASE_DATABASE_URL and OPENASE_REDIS_URL.",
    )
    commands.add_parser(
        "doctor",
        help="check everything the deployment needs, each with a one-line fix",
        description=(
            "Check the database and Redis, the GitHub App (GET /app with its JWT), the webhook "
            "secret, deliveries (GitHub's delivery log), installations, runners and their agent "
            "CLIs, each provider's runner and credentials, and Linear and Jira when configured. "
            "Uses OPENASE_DATABASE_URL / OPENASE_REDIS_URL, or a running `openase up`'s. Exit "
            "status 1 when something stops the main job, else 0."
        ),
    )
    commands.add_parser(
        "migrate",
        help="apply database migrations (alembic upgrade head)",
        description="Migrate the database to the newest schema. Needs OPENASE_DATABASE_URL.",
    )
    sync = commands.add_parser(
        "sync",
        help="backfill a repository's open issues and PRs, or a Linear team's or Jira "
        "project's issues, into the mirror",
        description=(
            "Page through a repository's open issues and pull requests with the GitHub API "
            "(needs the App's OPENASE_GITHUB_APP_ID and private key, and the App installed on "
            "the repository). Uses OPENASE_DATABASE_URL / OPENASE_REDIS_URL, or else the "
            "embedded services of an `openase up` running with the same OPENASE_DATA_DIR. "
            "`linear:TEAM` pages through a Linear team's issues (OPENASE_LINEAR_API_KEY), "
            "`jira:PROJECT` through a Jira project's with JQL (OPENASE_JIRA_URL, _EMAIL, "
            "_API_TOKEN)."
        ),
    )
    sync.add_argument("repo", metavar="OWNER/REPO|linear:TEAM|jira:PROJECT", type=repository)
    schedule_cli.add_parser(commands)
    _add_runner_parser(commands)
    _add_try_parser(commands)
    harness_cli.add_parsers(commands)
    app = commands.add_parser("app", help="GitHub App helpers", description="GitHub App helpers.")
    app_commands = app.add_subparsers(dest="app_command", metavar="COMMAND", required=True)
    manifest = app_commands.add_parser(
        "manifest",
        help="print app.yml as the JSON of GitHub's App manifest flow",
        description=(
            "Print the GitHub App manifest (app.yml) as JSON for GitHub's manifest flow. With "
            "--url, the homepage is URL/ and the webhook URL/webhooks/github."
        ),
    )
    manifest.add_argument("--url", metavar="BASE_URL", help="public base URL of the bot")
    return parser


def machine_name(value: str) -> str:
    """argparse type for a machine name: it becomes part of a Redis key and a queue name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", value):
        raise argparse.ArgumentTypeError(
            f"expected 1-63 letters, digits, '.', '-' or '_' (starting with a letter or digit), "
            f"got {value!r}"
        )
    return value


def labels(value: str) -> tuple[str, ...]:
    """argparse type for --labels a,b."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    for item in items:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,62}", item):
            raise argparse.ArgumentTypeError(f"label {item!r}: letters, digits and ._:/- only")
    return items


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {value!r}")
    return number


def niceness(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= NICEST:
        raise argparse.ArgumentTypeError(
            f"expected a niceness from 0 (normal) to {NICEST} (lowest priority), got {value!r}"
        )
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0 or number != number or number == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _add_runner_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    runner = commands.add_parser(
        "runner",
        help="execute agent runs on this machine (Redis only, no database)",
        description=(
            "Run this machine's runner: an arq worker on queue openase:runs:NAME that executes "
            "agent runs in git worktrees under --workspace-root. Needs only OPENASE_REDIS_URL "
            "(or a running `openase up` with the same OPENASE_DATA_DIR) and the git remotes; "
            "no database and no tracker credentials. SIGTERM lets runs finish for "
            "--drain-seconds, then stops them, keeps their work and hands them back."
        ),
    )
    runner.add_argument("--machine", required=True, type=machine_name, metavar="NAME")
    runner.add_argument(
        "--labels", type=labels, default=(), metavar="A,B", help="labels runs may require"
    )
    runner.add_argument(
        "--max-runs", type=positive_int, default=2, metavar="N", help="runs at once (2)"
    )
    runner.add_argument(
        "--workspace-root",
        type=Path,
        metavar="DIR",
        help="mirrors and worktrees (default OPENASE_DATA_DIR/workspaces/NAME)",
    )
    runner.add_argument(
        "--drain-seconds",
        type=positive_float,
        default=60.0,
        metavar="S",
        help="on SIGTERM, how long running runs may finish before being handed back (60)",
    )
    runner.add_argument(
        "--sandbox-read",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help=(
            "show PATH read-only inside the runs' sandbox (repeatable): where a command "
            "agent's scripts or extra tools live; the system and the agent CLI's own "
            "installation are always visible, nothing else of this machine is"
        ),
    )
    runner.add_argument(
        "--nice",
        type=niceness,
        default=0,
        metavar="N",
        help=(
            "run the runner, its agents and hooks at CPU niceness N (0-19, default 0): on a "
            "machine shared with the control plane, agents then never slow it down "
            "(`openase up` starts its runner at OPENASE_RUNNER_NICE, 10)"
        ),
    )


TRY_AGENTS = ("claude_code", "codex", "gemini", "command")


def _add_try_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trial = commands.add_parser(
        "try",
        help="one agent run on a local repository, to try a harness before publishing it",
        description=(
            "Run one agent on a local git repository without the queue or a database: the "
            "harness (default: the built-in `coder`) is rendered, skills and hooks applied, the "
            "agent's work committed on a new branch openase/try-<time> pushed into the "
            "repository (your checked-out branch is never touched). Live events go to stderr; "
            "the RunResult to stdout. Exit status 0 only when the run succeeded and every "
            "blocking hook passed."
        ),
        epilog=(
            "examples:\n"
            "  openase try --repo . --agent claude_code --env ANTHROPIC_API_KEY=$KEY \\\n"
            "      'fix the typo in README.md'\n"
            "  openase try --repo . --agent command --argv 'python3 agent.py {prompt_file}' \\\n"
            "      --hook on_complete='pytest -q' 'add a test for parse()'"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    trial.add_argument("--repo", required=True, type=Path, metavar="PATH")
    trial.add_argument("--agent", required=True, choices=TRY_AGENTS)
    trial.add_argument("--model", metavar="M")
    trial.add_argument(
        "--argv",
        metavar="'PROGRAM ARGS…'",
        help="command agent: its command line, split like a shell would; {prompt}, "
        "{prompt_file}, {instructions_file}, {workspace}, {ticket} expand",
    )
    trial.add_argument("--agent-bin", metavar="PATH", help="the agent CLI, if not on PATH")
    trial.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="provider setting for the agent (API key, base URL); the only variables it gets "
        "beyond PATH/HOME",
    )
    trial.add_argument("--harness", type=Path, metavar="FILE", help="a Jinja harness template")
    trial.add_argument(
        "--skill", action="append", default=[], type=Path, metavar="DIR", help="a skill folder"
    )
    trial.add_argument(
        "--hook",
        action="append",
        default=[],
        metavar="PHASE=CMD",
        help="e.g. on_complete='pytest -q' (blocking)",
    )
    trial.add_argument("--wall-seconds", type=positive_float, default=3600.0, metavar="S")
    trial.add_argument("--stall-seconds", type=positive_float, default=300.0, metavar="S")
    trial.add_argument("--budget-usd", type=positive_float, metavar="USD")
    trial.add_argument("--max-turns", type=positive_int, metavar="N")
    trial.add_argument(
        "--no-push", action="store_true", help="keep the branch in the throwaway workspace"
    )
    trial.add_argument("--workspace-root", type=Path, metavar="DIR")
    trial.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run the agent and hooks unconfined (a real run is sandboxed unless its "
        "workflow says `sandbox: off`)",
    )
    trial.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="let the sandboxed run reach HOST through the egress proxy (repeatable), as a "
        "workflow's network.allow; the agent's model API is always allowed",
    )
    trial.add_argument(
        "--sandbox-read",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="show PATH read-only inside the sandbox (repeatable): a command agent's script",
    )
    trial.add_argument("--json", action="store_true", help="print the RunResult as JSON")
    trial.add_argument("task", help="what the agent should do")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except ConfigError as exc:
        print(f"openase: {exc}", file=sys.stderr)
        return 2
    except OpenaseError as exc:
        print(f"openase: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C in `migrate` or `sync`; `up`/`serve`/`worker` handle it
        return 130


if __name__ == "__main__":
    sys.exit(main())
