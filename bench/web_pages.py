"""Benchmark: the web page's reads (issue #7) against a store the size of a busy team's.

    make bench-web                                     # 2,000 tickets, 50 requests per page
    make bench-web BENCH_ARGS="--tickets 10000 --repeat 100 --show-sql"

Real PostgreSQL and Redis (embedded, or the throwaway servers in OPENASE_BENCH_DATABASE_URL /
OPENASE_BENCH_REDIS_URL: every table is emptied), migrated, then seeded directly in the
tables: `--tickets` mirrored tickets over `--repos` repositories with their workflow states
(mostly done, the rest spread over the board), runs with results and hook results (one per
attempt), their agent events, activity rows, the run -> harness and skill versions each run
was given, `--harnesses` harnesses of `--versions` versions each and three skills (published
through the harness store, as the editor does). One ticket is the busiest: more runs and
activity than its page shows, a pinned harness and an open PR; its newest run has
`--events` agent events, more than the run page shows.

Every page is then read through the real app (bot.processes.app.create_app) over an in-process ASGI
client, one request at a time, reads public (no admin token, no sign-in): `--warmup`
requests first, then `--repeat` timed ones. Prints per page: p50 / p90 / max ms; the SQL
statements the app sent per request (counted on the engine; BEGIN, ROLLBACK and pool pings
are not statements here) and the median time spent in them; how many full (generation 2)
garbage collections ran during the timed requests, the usual cause of a max far above p90;
and the page's size. `--show-sql` prints each page's statements (the last request's).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.services import bench_services, empty_tables
from bot.deps import Deps, build_deps
from bot.processes.app import create_app
from bot.settings import Settings
from bot.tables.mirror import PullRequest, Repository, Ticket
from bot.tables.workflow import Activity, Run, RunEvent, RunState, TicketState
from bot.web.run_pages import OUTPUT_LIMIT
from bot.web.ticket_pages import ACTIVITY_PAGE, RUNS_LIMIT
from harness_store.builtin_content import builtin_harnesses, builtin_skills
from harness_store.db import transaction
from harness_store.models import RunVersions
from harness_store.store import pin_harness, publish_harness, publish_skill
from runner.contract import AgentEvent, EventKind, HookResult, RunResult, RunStatus, Usage

REPO_NAMES = ("acme/api", "acme/web", "acme/mobile", "acme/infra", "acme/billing", "acme/docs")
HARNESS_NAMES = (
    "coder",
    "reviewer",
    "tester",
    "docs",
    "fixer",
    "triager",
    "security-review",
    "release-notes",
    "refactorer",
    "migrator",
)
# How a long-lived board looks: most tickets finished, a tail in every other column.
STATE_WEIGHTS = {
    "done": 55,
    "canceled": 8,
    "failed": 2,
    "in_review": 10,
    "merging": 2,
    "in_progress": 5,
    "todo": 8,
    "backlog": 10,
}
BUSY_TICKETS = 50  # tickets with a long history: activity rows and agent events
ACTIVITY_PER_BUSY = 20
EVENTS_PER_BUSY_RUN = 30
SKILL_VERSIONS = 5
WORDS = (
    "login",
    "rate limit",
    "cache",
    "retry",
    "webhook",
    "export",
    "report",
    "search",
    "billing",
    "invoice",
    "timezone",
    "upload",
    "avatar",
    "settings",
    "dark mode",
    "pagination",
    "flaky test",
    "migration",
    "index",
    "memory leak",
    "crash on startup",
    "slow query",
    "permissions",
    "audit log",
    "email digest",
)


@dataclass
class Seeded:
    """What the pages are asked about, and how much was stored."""

    busy_ticket: int
    busy_run: str
    counts: dict[str, int]


# --- seeding -----------------------------------------------------------------------------------


def _title(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, 4)).capitalize()


def _body(rng: random.Random) -> str:
    """An issue description: a few hundred bytes to a few KB, as people write them."""
    steps = "".join(f"{n}. {_title(rng)}\n" for n in range(1, rng.randint(2, 8)))
    log = 'Traceback (most recent call last):\n  File "app/api.py", line 42\n' * rng.randint(0, 25)
    return f"## Steps to reproduce\n\n{steps}\n## What happened\n\n```\n{log}```\n"


def _harness_text(base: str, name: str, version: int) -> str:
    """Version `version` of a harness: the base with one more rule and a reworded line each."""
    rules = "".join(
        f"- Rule {n} for {name}: keep the change small and say why in the report.\n"
        for n in range(1, version)
    )
    text = base.replace("Nobody is watching", f"Nobody (revision {version}) is watching", 1)
    return f"{text.rstrip()}\n\n## House rules\n\n" + (rules or "- None yet.\n")


async def _publish_store(session: AsyncSession, harnesses: int, versions: int) -> dict[str, Any]:
    """Harness and skill versions, published as the editor does: name -> version ids."""
    bases = list(builtin_harnesses().values())
    harness_ids: dict[str, list[int]] = {}
    for index, name in enumerate(HARNESS_NAMES[:harnesses]):
        for number in range(1, versions + 1):
            row = await publish_harness(
                session,
                name,
                _harness_text(bases[index % len(bases)], name, number),
                author=("octocat", "hubot", "mona")[number % 3],
                message=f"{name}: revision {number}",
            )
            harness_ids.setdefault(name, []).append(row.id)
    skill_ids: list[list[int]] = []
    for name, files in builtin_skills().items():
        ids = []
        for number in range(1, SKILL_VERSIONS + 1):
            changed = {**files, "SKILL.md": files["SKILL.md"] + f"\n- Note {number}.\n"}
            ids.append((await publish_skill(session, name, changed, author="octocat")).id)
        skill_ids.append(ids)
    return {"harness": harness_ids, "skill": skill_ids}


def _result(run_id: str, status: RunStatus, started: datetime, rng: random.Random) -> RunResult:
    failed = status is RunStatus.GATES_FAILED
    hooks = (
        HookResult(
            phase="on_complete",
            name="tests",
            on_failure="block",
            exit_code=1 if failed else 0,
            duration_s=rng.uniform(20, 300),
            output_tail="FAILED tests/test_api.py::test_login - AssertionError\n" * 5
            if failed
            else "412 passed in 41.2s\n",
        ),
        HookResult(
            phase="on_complete",
            name="lint",
            on_failure="warn",
            exit_code=0,
            duration_s=rng.uniform(2, 20),
            output_tail="All checks passed!\n",
        ),
    )
    return RunResult(
        run_id=run_id,
        status=status,
        error="a blocking hook failed" if failed else None,
        branch="openase/ticket",
        hook_results=hooks,
        cost_usd=round(rng.uniform(0.05, 3), 4),
        summary="Changed the handler and added tests.\n\nRan pytest and ruff.",
        started_at=started,
        finished_at=started + timedelta(minutes=rng.randint(2, 40)),
    )


def _event(run_id: str, seq: int, at: datetime) -> AgentEvent:
    """The agent's turn as the runner streams it: text, a tool call and result, usage."""
    fields: dict[str, Any]
    turn = seq % 6
    if seq == 1:
        fields = {"kind": EventKind.PHASE, "text": "agent"}
    elif turn == 0:
        fields = {"kind": EventKind.HEARTBEAT}
    elif turn == 1:
        fields = {"kind": EventKind.TEXT, "text": f"Step {seq}: reading the handler and its tests."}
    elif turn == 2:
        fields = {"kind": EventKind.TOOL_CALL, "tool": "Bash", "input": {"command": "pytest -q"}}
    elif turn == 3:
        fields = {"kind": EventKind.TOOL_RESULT, "text": "12 passed in 0.8s\n" * 3}
    elif turn == 4:
        usage = Usage(input_tokens=900 * seq, output_tokens=40 * seq)
        fields = {"kind": EventKind.USAGE, "usage": usage, "cost_usd": seq / 1000}
    else:
        fields = {"kind": EventKind.LOG, "text": f"ruff: {seq} files checked"}
    return AgentEvent(run_id=run_id, seq=seq, at=at, **fields)


def _events(run_id: str, count: int, start: datetime) -> list[dict[str, Any]]:
    rows = []
    for seq in range(1, count + 1):
        agent_event = _event(run_id, seq, start + timedelta(seconds=seq))
        rows.append(
            {
                "run_id": run_id,
                "seq": seq,
                "kind": agent_event.kind.value,
                "event": agent_event.to_wire(),
                "at": agent_event.at,
            }
        )
    return rows


@dataclass
class Rows:
    """The rows to insert, table by table."""

    ticket_states: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    run_versions: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    activity: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class World:
    """What every ticket's rows are built from."""

    rng: random.Random
    start: datetime
    now: datetime
    harness_ids: dict[str, list[int]]  # name -> version ids, oldest first
    skill_ids: list[list[int]]  # per skill, version ids oldest first

    def harness_version(self, name: str, queued: datetime) -> int:
        """Older runs were given older versions, as the harness changed over time."""
        versions = self.harness_ids[name]
        when = (queued - self.start) / (self.now - self.start)
        return versions[min(len(versions) - 1, int(when * len(versions)))]


def _ticket_runs(
    world: World, rows: Rows, ticket: dict[str, Any], state: str, attempt: int, count: int
) -> list[str]:
    """A ticket's runs, one per attempt, the last one as its state says; their run ids."""
    rng, ids = world.rng, []
    for n in range(count):
        workflow = "coder" if rng.random() < 0.5 else rng.choice(list(world.harness_ids))
        queued = ticket["external_created_at"] + timedelta(hours=n + 1)
        run_id = f"t{ticket['id']}-{workflow}-{n:08x}"
        last = n == count - 1
        live = last and state == "in_progress"
        status = RunStatus.GATES_FAILED
        if last and state in ("done", "in_review", "merging"):
            status = RunStatus.SUCCEEDED
        elif last and state == "canceled":
            status = RunStatus.CANCELED
        result = None if live else _result(run_id, status, queued, rng)
        version_id = world.harness_version(workflow, queued)
        rows.runs.append(
            {
                "id": run_id,
                "ticket_id": ticket["id"],
                "workflow": workflow,
                "attempt": min(n, attempt) + 1,
                "machine": f"m{n % 3 + 1}",
                "state": RunState.RUNNING if live else RunState.FINISHED,
                "status": None if result is None else result.status.value,
                "spec": {"run_id": run_id, "ticket": {"key": ticket["key"]}},
                "result": None if result is None else result.to_wire(),
                "harness_version_id": version_id,
                "cost_usd": None if result is None else result.cost_usd,
                "queued_at": queued,
                "started_at": queued + timedelta(seconds=2),
                "finished_at": None if result is None else result.finished_at,
            }
        )
        rows.run_versions.append(
            {
                "run_id": run_id,
                "ticket_id": ticket["id"],
                "harness_version_id": version_id,
                "skill_version_ids": [rng.choice(skill) for skill in world.skill_ids[:2]],
                "created_at": queued,
            }
        )
        ids.append(run_id)
    return ids


def _activity(ticket: dict[str, Any], run_ids: list[str], count: int) -> list[dict[str, Any]]:
    return [
        {
            "ticket_id": ticket["id"],
            "run_id": run_ids[n % len(run_ids)] if run_ids and n % 4 == 1 else None,
            "kind": ("state", "run", "effect", "command")[n % 4],
            "message": f"step {n}: todo -> in_progress (attempt {n % 3 + 1})",
            "data": {"new": "in_progress"},
            "at": ticket["external_created_at"] + timedelta(minutes=n),
        }
        for n in range(count)
    ]


def _tickets(
    rng: random.Random, args: argparse.Namespace, start: datetime, now: datetime
) -> list[dict[str, Any]]:
    """Mirrored issues, round robin over the repositories, created over the last 90 days."""
    states = rng.choices(list(STATE_WEIGHTS), list(STATE_WEIGHTS.values()), k=args.tickets)
    states[0] = "in_review"  # the busiest ticket, waiting on its PR
    tickets = []
    for i, state in enumerate(states):
        repo = REPO_NAMES[i % args.repos]
        number = i // args.repos + 1
        tickets.append(
            {
                "source": "github",
                "external_id": str(1_000_000 + i),
                "repository_id": i % args.repos + 1,
                "number": number,
                "key": f"{repo}#{number}",
                "title": _title(rng),
                "body": _body(rng),
                "state": "closed" if state in ("done", "canceled") else "open",
                "labels": ["openase", "openase/" + state.replace("_", "-"), "bug"],
                "html_url": f"https://github.com/{repo}/issues/{number}",
                "external_created_at": start + (now - start) * i / args.tickets,
                "workflow_state": state,  # popped before the insert
            }
        )
    return tickets


def _workflow_rows(world: World, args: argparse.Namespace, tickets: list[dict[str, Any]]) -> Rows:
    """Each ticket's workflow state, runs, agent events and activity."""
    rng, rows = world.rng, Rows()
    for i, ticket in enumerate(tickets):
        state, busy = ticket["workflow_state"], i < BUSY_TICKETS
        attempt = 3 if i == 0 else rng.choice((0, 0, 0, 1, 2))
        rows.ticket_states.append(
            {
                "ticket_id": ticket["id"],
                "state": state,
                "workflow": "coder",
                "attempt": attempt,
                "held": rng.random() < 0.03,
                "pr_number": 10_000 + i if state in ("in_review", "merging", "done") else None,
                "cost_usd": round(rng.uniform(0, 9), 2),
                "updated_at": ticket["external_created_at"] + timedelta(hours=rng.randint(1, 200)),
            }
        )
        # A ticket in todo waits for its next attempt; one in backlog never ran.
        count = 0 if state == "backlog" else attempt if state == "todo" else attempt + 1
        if i == 0:
            count = RUNS_LIMIT + 10
        run_ids = _ticket_runs(world, rows, ticket, state, attempt, count)
        if busy:
            for run_id in run_ids:
                events = args.events if run_id == run_ids[-1] and i == 0 else EVENTS_PER_BUSY_RUN
                rows.events += _events(run_id, events, ticket["external_created_at"])
            rows.activity += _activity(
                ticket, run_ids, ACTIVITY_PAGE + 50 if i == 0 else ACTIVITY_PER_BUSY
            )
    return rows


async def seed(deps: Deps, args: argparse.Namespace) -> Seeded:
    rng = random.Random(7)  # noqa: S311  # a repeatable data set, not a secret
    now = datetime.now(UTC)
    start = now - timedelta(days=90)
    async with transaction(deps.sessions) as session:
        store_ids = await _publish_store(session, args.harnesses, args.versions)
        world = World(rng, start, now, store_ids["harness"], store_ids["skill"])
        await session.execute(
            insert(Repository),
            [
                {"id": i + 1, "full_name": name, "html_url": f"https://github.com/{name}"}
                for i, name in enumerate(REPO_NAMES[: args.repos])
            ],
        )
        tickets = _tickets(rng, args, start, now)
        ids = await session.scalars(
            insert(Ticket).returning(Ticket.id, sort_by_parameter_order=True),
            [{k: v for k, v in t.items() if k != "workflow_state"} for t in tickets],
        )
        for ticket, ticket_id in zip(tickets, ids, strict=True):
            ticket["id"] = ticket_id
        rows = _workflow_rows(world, args, tickets)
        await session.execute(insert(TicketState), rows.ticket_states)
        await session.execute(insert(Run), rows.runs)
        await session.execute(insert(RunVersions), rows.run_versions)
        for chunk in range(0, len(rows.events), 5000):
            await session.execute(insert(RunEvent), rows.events[chunk : chunk + 5000])
        await session.execute(insert(Activity), rows.activity)
        busy = tickets[0]
        await session.execute(
            insert(PullRequest),
            [
                {
                    "id": 1,
                    "repository_id": busy["repository_id"],
                    "number": 10_000,
                    "title": "Fix the login rate limit",
                    "state": "open",
                    "html_url": busy["html_url"]
                    .replace("/issues/", "/pull/")
                    .replace(f"/{busy['number']}", "/10000"),
                }
            ],
        )
        await pin_harness(session, busy["id"], "coder", max(1, args.versions - 2))
    busy_runs = [run["id"] for run in rows.runs if run["ticket_id"] == busy["id"]]
    counts = {
        "tickets": len(tickets),
        "runs": len(rows.runs),
        "run events": len(rows.events),
        "activity rows": len(rows.activity),
    }
    return Seeded(busy["id"], busy_runs[-1], counts)


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Measured:
    page: str
    seconds: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    sql_seconds: list[float] = field(default_factory=list)
    full_collections: int = 0  # the garbage collector's generation-2 passes while timed
    size: int = 0
    statuses: set[int] = field(default_factory=set)
    sql: list[str] = field(default_factory=list)  # the last request's statements


class Probe:
    """What one request cost besides its wall time: the statements the engine sent and the
    time spent in them (until their rows were fetched), and full garbage collections."""

    def __init__(self, deps: Deps) -> None:
        self.sql: list[str] = []
        self.sql_seconds = 0.0
        self.full_collections = 0
        self._started = 0.0
        engine = deps.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        gc.callbacks.append(self._collected)

    def reset(self) -> None:
        self.sql, self.sql_seconds, self.full_collections = [], 0.0, 0

    def _before(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.sql.append(statement)
        self._started = time.perf_counter()

    def _after(self, *_: Any) -> None:
        self.sql_seconds += time.perf_counter() - self._started

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.full_collections += 1


async def measure(
    client: httpx.AsyncClient, probe: Probe, path: str, warmup: int, repeat: int
) -> Measured:
    for _ in range(warmup):
        await client.get(path)
    out = Measured(path)
    for _ in range(repeat):
        probe.reset()
        started = time.perf_counter()
        response = await client.get(path)
        out.seconds.append(time.perf_counter() - started)
        out.statements.append(len(probe.sql))
        out.sql_seconds.append(probe.sql_seconds)
        out.full_collections += probe.full_collections
        out.statuses.add(response.status_code)
        out.size = len(response.content)
        out.sql = probe.sql
    return out


def _q(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(rows: list[Measured], show_sql: bool) -> bool:
    print(
        f"{'page':<52} {'p50':>6} {'p90':>6} {'max':>6}  {'SQL/req':>7} {'SQL p50':>7}"
        f" {'full GCs':>8} {'KB':>5}  status"
    )
    ok = True
    for row in rows:
        ms = [1000 * s for s in row.seconds]
        low, high = min(row.statements), max(row.statements)
        count = str(low) if low == high else f"{low}-{high}"
        sql_ms = 1000 * statistics.median(row.sql_seconds)
        statuses = ",".join(map(str, sorted(row.statuses)))
        ok = ok and row.statuses == {200}
        print(
            f"GET {row.page:<48} {statistics.median(ms):6.1f} {_q(ms, 0.9):6.1f} {max(ms):6.1f}"
            f"  {count:>7} {sql_ms:7.1f} {row.full_collections:8} {row.size / 1024:5.0f}"
            f"  {statuses}"
        )
    if show_sql:
        for row in rows:
            print(f"\n-- GET {row.page}: {len(row.sql)} statements")
            for statement in row.sql:
                print("   " + " ".join(statement.split()))
    return ok


async def run(args: argparse.Namespace, database_url: str, redis_url: str, root: Path) -> int:
    settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        admin_token=None,
        web_reads="public",
    )
    deps = await build_deps(settings, database_url=database_url, redis_url=redis_url)
    try:
        await empty_tables(deps.engine)
        started = time.perf_counter()
        seeded = await seed(deps, args)
        async with deps.engine.begin() as conn:
            await conn.execute(text("ANALYZE"))  # plans as on a database that has lived a while
        stored = ", ".join(f"{count} {what}" for what, count in seeded.counts.items())
        print(
            f"seeded in {time.perf_counter() - started:.1f} s: {stored}; {args.repos} "
            f"repositories, {args.harnesses} harnesses x {args.versions} versions, 3 skills x "
            f"{SKILL_VERSIONS} versions"
        )
        print(
            f"busiest ticket {seeded.busy_ticket}: {RUNS_LIMIT + 10} runs (page shows "
            f"{RUNS_LIMIT}), {ACTIVITY_PAGE + 50} activity rows (page shows {ACTIVITY_PAGE}); "
            f"its run {seeded.busy_run}: {args.events} events (page shows {OUTPUT_LIMIT})"
        )
        last = args.versions
        pages = [
            "/tickets",
            f"/tickets?repo={REPO_NAMES[0]}",
            f"/tickets/{seeded.busy_ticket}",
            f"/runs/{seeded.busy_run}",
            "/harnesses",
            "/harnesses/coder",
            f"/harnesses/coder/versions/{last}",
            f"/harnesses/coder/diff?from=1&to={last}&view=split",
            "/api/v1/harnesses",
        ]
        probe = Probe(deps)
        app = create_app(settings, database_url=database_url, redis_url=redis_url, deps=deps)
        if not args.no_freeze:
            gc.freeze()  # as `openase serve` does (bot/processes/app.py), unless asked not to
        transport = httpx.ASGITransport(app=app)
        print(
            f"\n{args.repeat} requests per page after {args.warmup} warm-up ones, one at a time, "
            "in-process ASGI client; ms"
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://openase.test") as http:
            rows = [await measure(http, probe, page, args.warmup, args.repeat) for page in pages]
        ok = report(rows, args.show_sql)
        if not ok:
            print("MISMATCH: a page did not answer 200")
        return 0 if ok else 1
    finally:
        await deps.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=2000, help="mirrored tickets")
    parser.add_argument("--repos", type=int, default=4, choices=range(1, len(REPO_NAMES) + 1))
    parser.add_argument(
        "--harnesses", type=int, default=10, choices=range(1, len(HARNESS_NAMES) + 1)
    )
    parser.add_argument("--versions", type=int, default=20, help="versions of each harness")
    parser.add_argument("--events", type=int, default=1500, help="agent events of the busy run")
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=5, help="requests per page, not timed")
    parser.add_argument("--show-sql", action="store_true", help="print each page's statements")
    parser.add_argument(
        "--no-freeze",
        action="store_true",
        help="skip gc.freeze() after start-up, to see what full collections cost",
    )
    args = parser.parse_args()
    if args.tickets < BUSY_TICKETS or args.versions < 2 or args.repeat < 1:
        parser.error(f"needs --tickets >= {BUSY_TICKETS}, --versions >= 2 and --repeat >= 1")
    with bench_services() as services:
        return asyncio.run(run(args, services.database_url, services.redis_url, services.root))


if __name__ == "__main__":
    sys.exit(main())
