"""A whole OpenASE on one machine, driven the way GitHub drives it: signed webhooks in, a
recording fake GitHub API out, the real control worker (engine, outbox, crons) in this
process and real `openase runner` processes executing runs in git worktrees of a real
bare repository that stands in for the GitHub remote.

Webhooks are built from GitHub's published example payloads with this world's
repository, issues and pull requests put in, so the adapter parses real shapes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from arq.worker import Worker
from sqlalchemy import select

from bot.config.control import ControlConfig, parse_control_config
from bot.deps import Deps
from bot.engine.context import Engine
from bot.engine.runs.machines import registered
from bot.processes.worker import make_worker
from bot.registry import TrackerClients
from bot.settings import Settings
from bot.tables.mirror import Ticket
from bot.tables.workflow import Activity, Run, TicketState
from harness_store.seed import seed_builtins
from runner.sandbox import bwrap
from tests.fakes.github_api import FakeGitHubAPI, FakeRepo
from tests.fakes.github_graphql import FakeGitHubGraphQL
from tests.support.git_repos import git
from tests.support.helpers import GitHubWebhookSender, github_example

T = TypeVar("T")
Json = dict[str, Any]

INSTALLATION = 31_337
REPO_ID = 5_150
FULL_NAME = "octo/hello"
WRITER = "alice"
OPENASE = Path(sys.executable).parent / "openase"

# The agent: a program that does what the ticket's body asks of it (markers), so one
# script plays every scenario. The runner commits whatever it leaves in the worktree.
AGENT = textwrap.dedent(
    """\
    import os, pathlib, sys, time
    prompt = pathlib.Path(sys.argv[1]).read_text()
    work = pathlib.Path(os.environ["OPENASE_WORKSPACE"])
    retried = "Fix what made it fail" in prompt
    if "[slow]" in prompt or ("[slow-first]" in prompt and not retried):
        time.sleep(SLEEP)
    if "[talk]" in prompt:  # output arriving over a few seconds, for live pages
        for step in range(1, 7):
            print(f"step {step} of 6", flush=True)
            time.sleep(0.7)
    if "[egress]" in prompt:  # asks the sandbox's proxy for a host no workflow allows
        import socket
        try:
            with socket.create_connection(("127.0.0.1", 3128), timeout=5) as proxy:
                proxy.sendall(b"CONNECT example.com:443 HTTP/1.1\\r\\n\\r\\n")
                print("the proxy said", proxy.recv(200).decode(errors="replace").split("\\r")[0])
        except OSError as error:
            print("no proxy:", error)
    answered = "The answer to your question" in prompt
    if "[ask]" in prompt and not answered:  # the ask-a-human skill: ask, keep the draft, stop
        (work / "DRAFT").write_text("half done\\n")
        asked = pathlib.Path(os.environ["OPENASE_QUESTION_FILE"])
        asked.write_text("Which colour should the button be, @bob: red or blue?\\n")
        print("I need to know the colour first")
        sys.exit(0)
    if answered:
        (work / "ANSWER").write_text(prompt.split("The answer to your question", 1)[1])
    (work / "attempts.txt").open("a").write("attempt\\n")
    passes = not ("[never-pass]" in prompt or ("[fail-first]" in prompt and not retried))
    if passes:
        (work / "PASS").write_text("ok\\n")
    if "Review feedback to address" in prompt:
        (work / "REVIEWED").write_text(prompt.split("Review feedback to address", 1)[1])
    print("I did the work" + (" and the gate will pass" if passes else ""))
    """
)
GATE = "test -f PASS || { echo 'src/app.py:3:1: error: the PASS file is missing'; exit 1; }"


# The end-to-end runs are confined as in production where bubblewrap can confine here;
# where it cannot (tests/runner/sandbox/ then skip, naming the fix) they run unconfined.
CONFINED = asyncio.run(bwrap.probe()).available  # at import: no event loop runs yet
SANDBOX = "" if CONFINED else "sandbox: off"


def repo_config(
    *,
    max_attempts: int = 3,
    approval: str = "required",
    repo_concurrency: int | None = None,
    extra: str = "",
) -> str:
    """The repository's `.github/openase.yml`: one workflow whose gate wants a PASS file."""
    concurrency = f", concurrency: {{repo: {repo_concurrency}}}" if repo_concurrency else ""
    return (
        textwrap.dedent(
            f"""\
        workflows:
          coder:
            trigger_labels: [openase]
            provider: script
            skills: []
            max_attempts: {max_attempts}
            approval: {approval}
            merge_method: squash
            limits: {{backoff_seconds: 1{concurrency}}}
            {SANDBOX}
            hooks:
              on_complete:
                - {{name: tests, run: "{GATE}", timeout: 60}}
        """
        )
        + extra
    )


def control_config(agent: Path, extra: str = "") -> ControlConfig:
    """The control-plane config driving the script agent; `extra` is YAML appended to it
    (Linear and Jira routes)."""
    parsed = parse_control_config(
        textwrap.dedent(
            f"""\
            providers:
              script:
                cli: command
                argv: ["{sys.executable}", "{agent}", "{{prompt_file}}"]
                limits: {{wall_seconds: 120, stall_seconds: 60}}
            defaults:
              provider: script
            """
        )
        + textwrap.dedent(extra),
        file="control.yml",
        environ={},
    )
    assert isinstance(parsed, ControlConfig), parsed
    return parsed


@dataclass
class Runner:
    machine: str
    process: asyncio.subprocess.Process
    log: Path
    out: Any  # the log file's handle, closed when the runner is gone

    def kill(self) -> None:
        """SIGKILL the runner and its agents: a machine gone without a word."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@dataclass
class World:
    deps: Deps
    settings: Settings
    fake: FakeGitHubAPI
    sender: GitHubWebhookSender
    repo: FakeRepo
    remote: Path
    root: Path
    redis_url: str
    engine: Engine
    runners: list[Runner] = field(default_factory=list)
    boards: FakeGitHubGraphQL | None = None
    path_prefix: Path | None = None
    sent: dict[str, tuple[str, Json]] = field(default_factory=dict)  # by delivery id
    workers: list[tuple[Worker, asyncio.Task[Any]]] = field(default_factory=list)
    _clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- GitHub's side ---------------------------------------------------------------

    def now(self) -> str:
        """Each webhook a second later than the last: the mirror never goes backwards."""
        at = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=next(self._clock))
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def user(self, login: str, kind: str = "User") -> Json:
        user = dict(github_example("issues", "labeled")["sender"])
        user.update(login=login, id=abs(hash(login)) % 10_000_000, type=kind)
        return user

    def add_issue(
        self, number: int, title: str, body: str = "", labels: tuple[str, ...] = ()
    ) -> Json:
        issue = self.fake.add_issue(
            self.repo, number, title=title, labels=labels, updated_at=self.now()
        )
        issue.update(body=body, state="open")
        return issue

    def issue(self, number: int) -> Json:
        found = next(i for i in self.repo.issues if i["number"] == number)
        return found

    def envelope(self, sender: str, sender_type: str = "User") -> Json:
        return {
            "repository": self.repo.data,
            "sender": self.user(sender, sender_type),
            "installation": {"id": INSTALLATION, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"},
        }

    async def label(
        self,
        number: int,
        name: str,
        *,
        by: str = WRITER,
        bot: bool = False,
        delivery: str | None = None,
        at: str | None = None,
    ) -> None:
        """A human adds a label to an issue (GitHub's `issues.labeled`)."""
        issue = self.issue(number)
        template = (
            issue["labels"][0] if issue["labels"] else github_example("issues", "labeled")["label"]
        )
        label = {**template, "id": 50_000 + len(name), "name": name}
        names = [item["name"] for item in issue["labels"]]
        if name not in names:
            issue["labels"] = [*issue["labels"], label]
        issue["updated_at"] = at or self.now()
        envelope = self.envelope(by, "Bot" if bot else "User")
        payload = {"action": "labeled", "issue": issue, "label": label, **envelope}
        await self.send("issues", payload, delivery)

    async def open_issue(self, number: int, *, by: str = WRITER) -> None:
        """GitHub's `issues.opened` for an issue added with `add_issue`."""
        issue = self.issue(number)
        await self.send("issues", {"action": "opened", "issue": issue, **self.envelope(by)})

    async def close_issue(self, number: int, *, by: str = WRITER) -> None:
        issue = self.issue(number)
        issue.update(
            state="closed", state_reason="not_planned", closed_at=self.now(), updated_at=self.now()
        )
        await self.send("issues", {"action": "closed", "issue": issue, **self.envelope(by)})

    async def merge_by_hand(self, pull: Json, *, by: str = WRITER) -> None:
        """A human merges the PR on GitHub (`pull_request.closed` with `merged`)."""
        now = self.now()
        pull.update(state="closed", merged=True, merged_at=now, closed_at=now, updated_at=now)
        await self.send(
            "pull_request",
            {
                "action": "closed",
                "number": pull["number"],
                "pull_request": pull,
                **self.envelope(by),
            },
        )

    async def rerequest(self, sha: str, *, by: str = WRITER) -> None:
        """A human presses "Re-run" on the `openase` check run of a commit."""
        run = next(
            r
            for r in self.fake.check_runs.values()
            if r["head_sha"] == sha and r["name"] == "openase"
        )
        example = github_example("check_run", "rerequested")
        check = {
            **example["check_run"],
            "id": run["id"],
            "name": run["name"],
            "external_id": run["external_id"],
            "head_sha": sha,
            "app": {**example["check_run"]["app"], "id": self.settings.github_app_id},
        }
        await self.send(
            "check_run", {"action": "rerequested", "check_run": check, **self.envelope(by)}
        )

    async def comment(
        self,
        number: int,
        body: str,
        *,
        by: str = WRITER,
        kind: str = "User",
        delivery: str | None = None,
    ) -> Json:
        """A comment on an issue or PR (GitHub's `issue_comment.created`); the comment."""
        made = self.fake.add_comment(self.repo, number, body, login=by)
        made["user"] = self.user(by, kind)
        public = {k: v for k, v in made.items() if not k.startswith("_")}
        issue = self.issue(number)
        issue["updated_at"] = self.now()
        payload = {
            "action": "created",
            "issue": issue,
            "comment": public,
            **self.envelope(by, kind),
        }
        await self.send("issue_comment", payload, delivery)
        return made

    async def edit_comment(self, number: int, made: Json, body: str, *, by: str = WRITER) -> None:
        """GitHub's `issue_comment.edited`: edits never run commands again."""
        made["body"] = body
        made["updated_at"] = self.now()
        public = {k: v for k, v in made.items() if not k.startswith("_")}
        issue = self.issue(number)
        payload = {
            "action": "edited",
            "changes": {"body": {"from": "before"}},
            "issue": issue,
            "comment": public,
            **self.envelope(by),
        }
        await self.send("issue_comment", payload)

    def reactions_on(self, comment: Json) -> list[str]:
        subject = ("issue_comment", comment["id"])
        return [r["content"] for r in self.fake.reactions if r["_subject"] == subject]

    async def checks_completed(self, run: Json) -> None:
        """GitHub's `check_run.completed` for a check run of the fake."""
        public = {k: v for k, v in run.items() if not k.startswith("_")}
        await self.send(
            "check_run",
            {"action": "completed", "check_run": public, **self.envelope("ci[bot]", "Bot")},
        )

    def pull_for(self, number: int) -> Json | None:
        branch = f"openase/{number}"
        return next((p for p in self.repo.pulls if p["head"]["ref"] == branch), None)

    async def review(
        self,
        pull: Json,
        state: str,
        body: str = "",
        *,
        by: str = WRITER,
        comments: list[Json] | None = None,
    ) -> None:
        """A human submits a review of a PR (GitHub's `pull_request_review.submitted`)."""
        example = github_example("pull_request_review", "submitted")
        review_id = 80_000 + next(self._clock)
        review = {
            **example["review"],
            "id": review_id,
            "state": state,
            "body": body or None,
            "user": self.user(by),
            "commit_id": pull["head"]["sha"],
            "submitted_at": self.now(),
        }
        self.fake.review_comments[review_id] = comments or []
        pull["updated_at"] = self.now()
        payload = {
            "action": "submitted",
            "review": review,
            "pull_request": pull,
            **self.envelope(by),
        }
        await self.send("pull_request_review", payload)

    async def send(self, event: str, payload: Json, delivery: str | None = None) -> None:
        response = await self.sender.send(event, payload, delivery_id=delivery)
        assert response.status_code in (200, 202), response.text
        if delivery is not None:
            self.sent[delivery] = (event, json.loads(json.dumps(payload)))

    async def send_again(self, delivery: str) -> None:
        """GitHub's redelivery: the same delivery id and payload once more."""
        event, payload = self.sent[delivery]
        response = await self.sender.send(event, payload, delivery_id=delivery)
        assert response.status_code in (200, 202), response.text

    # --- our side --------------------------------------------------------------------------

    async def start_worker(self) -> None:
        """One more control worker (arq), sharing the queue with the others."""
        worker = make_worker(
            self.settings,
            redis_url=self.redis_url,
            deps=self.deps,
            engine=self.engine,
        )
        self.workers.append((worker, asyncio.create_task(worker.main())))

    async def stop_worker(self, *, graceful: bool = True) -> None:
        """Stop every control worker: after its jobs finish, or (not graceful) mid-job."""
        for worker, task in self.workers:
            if graceful:
                worker.allow_pick_jobs = False
                for _ in range(300):  # up to 15 s for the jobs in hand
                    if not worker.tasks:
                        break
                    await asyncio.sleep(0.05)
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await worker.close()
        self.workers.clear()

    async def start_runner(self, machine: str = "m1", *, max_runs: int = 2) -> Runner:
        log = self.root / f"runner-{machine}-{len(self.runners)}.log"
        out = log.open("wb")
        env = {
            "PATH": os.pathsep.join(
                [str(self.path_prefix)] * (self.path_prefix is not None) + [os.environ["PATH"]]
            ),
            "HOME": str(self.root / "home"),
            "OPENASE_REDIS_URL": self.redis_url,
        }
        process = await asyncio.create_subprocess_exec(
            str(OPENASE),
            "runner",
            "--machine",
            machine,
            "--max-runs",
            str(max_runs),
            "--workspace-root",
            str(self.root / f"ws-{machine}"),
            "--drain-seconds",
            "5",
            "--sandbox-read",
            str(self.root / "agents"),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        runner = Runner(machine, process, log, out)
        self.runners.append(runner)

        async def up() -> bool:
            return any(m.name == machine for m in await registered(self.deps.redis))

        await self.until(up, within=30, what=f"runner {machine} to register", runner=runner)
        return runner

    async def stop_runners(self) -> None:
        for runner in self.runners:
            if runner.process.returncode is None:
                with suppress(ProcessLookupError):
                    os.killpg(runner.process.pid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(runner.process.wait(), 15)
                except TimeoutError:
                    runner.kill()
                    await runner.process.wait()
            runner.out.close()

    async def until(
        self,
        check: Callable[[], Awaitable[T | bool | None]],
        *,
        within: float = 60,
        what: str = "the condition",
        runner: Runner | None = None,
    ) -> T:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            value = await check()
            if value:
                return value  # type: ignore[return-value]  # truthy T (or True)
            if asyncio.get_running_loop().time() > deadline:
                logs = "\n".join(
                    f"--- {r.log.name}\n{r.log.read_text()[-3000:]}"
                    for r in ([runner] if runner else self.runners)
                    if r.log.exists()
                )
                raise AssertionError(f"timed out waiting for {what}\n{await self.story()}\n{logs}")
            await asyncio.sleep(0.1)

    async def state(self, number: int) -> TicketState | None:
        async with self.deps.sessions() as session:
            return await session.scalar(
                select(TicketState)
                .join(Ticket, Ticket.id == TicketState.ticket_id)
                .where(Ticket.number == number)
            )

    async def ticket_id(self, number: int) -> int:
        """The issue's ticket id, once a webhook has mirrored it."""

        async def mirrored() -> int | None:
            async with self.deps.sessions() as session:
                found: int | None = await session.scalar(
                    select(Ticket.id).where(Ticket.number == number)
                )
            return found

        return await self.until(mirrored, what=f"#{number} mirrored")

    async def reach(self, number: int, state: str, *, within: float = 60) -> TicketState:
        async def there() -> TicketState | None:
            row = await self.state(number)
            return row if row is not None and row.state == state else None

        return await self.until(there, within=within, what=f"#{number} to reach {state}")

    async def runs(self, number: int) -> list[Run]:
        async with self.deps.sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Run)
                        .join(Ticket, Ticket.id == Run.ticket_id)
                        .where(Ticket.number == number)
                        .order_by(Run.queued_at)
                    )
                ).all()
            )

    async def story(self) -> str:
        """The activity log, for failure messages."""
        async with self.deps.sessions() as session:
            rows = (await session.scalars(select(Activity).order_by(Activity.id))).all()
        return "\n".join(f"{a.ticket_id} {a.kind}: {a.message}" for a in rows)

    def labels(self, number: int) -> list[str]:
        return self.fake.labels_of(self.repo, number)

    def bot_comments(self, number: int) -> list[str]:
        return [
            c["body"]
            for c in self.fake.comments_on(self.repo, number)
            if c["user"]["type"] == "Bot"
        ]

    def check_runs(self, sha: str) -> dict[str, Json]:
        return {run["name"]: run for run in self.fake.check_runs.values() if run["head_sha"] == sha}


def make_remote(root: Path, config: str) -> Path:
    """A bare repository with a main branch holding the code and `.github/openase.yml`."""
    seed = root / "seed"
    seed.mkdir()
    git(seed, "init", "-q", "-b", "main")
    (seed / "README.md").write_text("# hello\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hello')\n")
    if config:  # "" stands for a repository without the file
        (seed / ".github").mkdir()
        (seed / ".github" / "openase.yml").write_text(config)
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "seed")
    remote = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(seed), str(remote))
    return remote


@asynccontextmanager
async def world(
    deps: Deps,
    settings: Settings,
    fake: FakeGitHubAPI,
    sender: GitHubWebhookSender,
    root: Path,
    redis_url: str,
    *,
    config: str | None = None,
    runners: int = 1,
    workers: int = 1,
    max_runs: int = 2,
    agent_sleep: float = 30.0,
    control: str | None = None,
    control_extra: str = "",
    trackers: TrackerClients | None = None,
    path_prefix: Path | None = None,
) -> AsyncIterator[World]:
    """`control` replaces the control-plane YAML (its default drives this module's
    script agent); `path_prefix` goes in front of the runners' PATH (an agent CLI's home)."""
    """The world, with its worker and runners started; everything stopped afterwards."""
    # Its own directory, the one the runners show their sandboxes (`--sandbox-read`): the
    # rest of `root` holds the runners' workspaces and homes, which a run must not see.
    agent = root / "agents" / "agent.py"
    agent.parent.mkdir()
    # The agent's environment is scrubbed: how long it sleeps is written into it.
    agent.write_text(AGENT.replace("SLEEP", repr(float(agent_sleep))))
    (root / "home").mkdir()
    remote = make_remote(root, repo_config() if config is None else config)
    fake.add_installation(INSTALLATION, "octo")
    repo = fake.add_repo(FULL_NAME, REPO_ID, INSTALLATION)
    repo.data.update(clone_url=str(remote), default_branch="main")
    repo.git_dir = remote
    fake.permissions[WRITER] = "write"
    boards = FakeGitHubGraphQL(fake)  # GraphQL for Projects v2; a test may add a board
    async with deps.sessions() as session, session.begin():
        await seed_builtins(session)
    controls = (
        control_config(agent, control_extra)
        if control is None
        else parse_control_config(control, file="control.yml", environ={})
    )
    assert isinstance(controls, ControlConfig), controls
    engine = Engine(
        deps=deps,
        github=deps.github_app(),
        control=controls,
        trackers=trackers if trackers is not None else TrackerClients(),
    )
    here = World(deps, settings, fake, sender, repo, remote, root, redis_url, engine)
    here.path_prefix = path_prefix
    here.boards = boards
    try:
        for _ in range(workers):
            await here.start_worker()
        for index in range(runners):
            await here.start_runner(f"m{index + 1}", max_runs=max_runs)
        yield here
    finally:
        await here.stop_runners()
        await here.stop_worker()
        deps.workflow = None
