"""Seeding the bench's store fast: COPY for the rows built in Python (bench.web.rows), one
INSERT … SELECT for the agent events, runners registered in Redis as a real one does."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bench.web import rows as data
from bot.deps import Deps
from bot.tables.mirror import Repository
from bot.tables.stats import rebuild as rebuild_stats
from bot.tables.workflow import TicketState
from harness_store.builtin_content import builtin_harnesses, builtin_skills
from harness_store.db import transaction
from harness_store.store import pin_harness, publish_harness, publish_skill
from runner.contract import MACHINES_SET, AgentEvent, EventKind, Usage, machine_key
from runner.machine import MachineFacts

SKILL_VERSIONS = 5
FAILED_DELIVERIES = 40
FAILED_EFFECTS = 10
GB = 1024**3


@dataclass
class Seeded:
    """What the pages are asked about, and how much was stored."""

    busy_ticket: int
    small_ticket: int
    busy_run: str
    small_run: str
    busy_key: str  # owner/name/number
    small_key: str
    activity_cursor: str  # a page link's `before` deep in the activity log
    counts: dict[str, int]


def _harness_text(base: str, name: str, version: int) -> str:
    """Version `version` of a harness: the base with one more rule and a reworded line each."""
    rules = "".join(
        f"- Rule {n} for {name}: keep the change small and say why in the report.\n"
        for n in range(1, version)
    )
    body = base.replace("Nobody is watching", f"Nobody (revision {version}) is watching", 1)
    return f"{body.rstrip()}\n\n## House rules\n\n" + (rules or "- None yet.\n")


async def _publish_store(session: AsyncSession, harnesses: int, versions: int) -> dict[str, Any]:
    """Harness and skill versions, published as the editor does: name -> version ids."""
    bases = list(builtin_harnesses().values())
    harness_ids: dict[str, list[int]] = {}
    for index, name in enumerate(data.HARNESS_NAMES[:harnesses]):
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


def event_templates() -> list[tuple[int, str, str]]:
    """(turn, kind, wire JSON without run_id/seq/at) of the agent's turn as a runner streams
    it: a phase first, then text, a tool call and its result, usage, a log line, a heartbeat."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    fields: list[tuple[int, dict[str, Any]]] = [
        (-1, {"kind": EventKind.PHASE, "text": "agent"}),
        (0, {"kind": EventKind.HEARTBEAT}),
        (1, {"kind": EventKind.TEXT, "text": "Reading the handler and its tests."}),
        (2, {"kind": EventKind.TOOL_CALL, "tool": "Bash", "input": {"command": "pytest -q"}}),
        (3, {"kind": EventKind.TOOL_RESULT, "text": "12 passed in 0.8s\n" * 3}),
        (
            4,
            {
                "kind": EventKind.USAGE,
                "usage": Usage(input_tokens=90_000, output_tokens=4_000),
                "cost_usd": 0.42,
            },
        ),
        (5, {"kind": EventKind.LOG, "text": "ruff: 120 files checked"}),
    ]
    out = []
    for turn, values in fields:
        wire = AgentEvent(run_id="x", seq=1, at=at, **values).to_wire()
        for name in ("run_id", "seq", "at"):
            wire.pop(name)
        out.append((turn, str(wire["kind"]), json.dumps(wire)))
    return out


_EVENTS = """
INSERT INTO run_events (run_id, seq, kind, event, at)
SELECT r.id, s, t.kind,
       t.event || jsonb_build_object('run_id', r.id, 'seq', s,
                                     'at', r.queued_at + s * interval '1 second'),
       r.queued_at + s * interval '1 second'
FROM (SELECT id, queued_at,
             CASE WHEN id = :busy THEN :busy_events
                  ELSE (CAST(:rest AS bigint) * rn) / :runs
                       - (CAST(:rest AS bigint) * (rn - 1)) / :runs END AS n
      FROM (SELECT id, queued_at, row_number() OVER (ORDER BY id) AS rn FROM runs) numbered
     ) r
CROSS JOIN LATERAL generate_series(1, r.n) AS s
JOIN bench_event_templates t ON t.turn = CASE WHEN s = 1 THEN -1 ELSE s % 6 END
"""


async def _copy(conn: AsyncConnection, table: str, columns: tuple[str, ...], records: Any) -> None:
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    await driver.copy_records_to_table(table, records=records, columns=list(columns))


async def _events(conn: AsyncConnection, busy_run: str, busy_events: int, total: int) -> int:
    await conn.execute(
        text("CREATE TEMP TABLE bench_event_templates (turn int, kind text, event jsonb)")
    )
    await _copy(conn, "bench_event_templates", ("turn", "kind", "event"), event_templates())
    runs = int((await conn.execute(text("SELECT count(*) FROM runs"))).scalar_one())
    rest = max(0, total - busy_events)
    params = {"busy": busy_run, "busy_events": busy_events, "rest": rest, "runs": max(1, runs - 1)}
    await conn.execute(text(_EVENTS), params)
    return int((await conn.execute(text("SELECT count(*) FROM run_events"))).scalar_one())


async def _moments(conn: AsyncConnection, rows: data.Rows) -> None:
    """ticket_states' labelled/PR/done moments, when the table has those columns."""
    known = TicketState.__table__.c
    if not all(name in known for name in ("labelled_at", "pr_at", "done_at")):
        return
    await conn.execute(
        text(
            "CREATE TEMP TABLE bench_moments "
            "(ticket_id bigint, labelled_at timestamptz, pr_at timestamptz, done_at timestamptz)"
        )
    )
    columns = ("ticket_id", "labelled_at", "pr_at", "done_at")
    await _copy(conn, "bench_moments", columns, rows.moments)
    await conn.execute(
        text(
            "UPDATE ticket_states s SET labelled_at = m.labelled_at, pr_at = m.pr_at, "
            "done_at = m.done_at FROM bench_moments m WHERE m.ticket_id = s.ticket_id"
        )
    )


async def _failures(conn: AsyncConnection, now: datetime) -> None:
    """Deliveries that failed to ingest and effects that gave up with no ticket."""
    deliveries = [
        (
            "github",
            f"d-{n}",
            "issues",
            "opened",
            data.REPO_NAMES[n % 4],
            json.dumps({"sender": {"login": data.LOGINS[n % len(data.LOGINS)]}}),
            "failed",
            "KeyError: 'issue'",
            1,
            now - timedelta(hours=n * 13),
        )
        for n in range(FAILED_DELIVERIES)
    ]
    columns = (
        "source",
        "delivery_id",
        "event",
        "action",
        "repository",
        "payload",
        "status",
        "error",
        "attempts",
        "received_at",
    )
    await _copy(conn, "deliveries", columns, deliveries)
    effects = [
        (f"e-{n}", "label", "{}", "failed", 5, "403 Forbidden", now - timedelta(hours=n * 29))
        for n in range(FAILED_EFFECTS)
    ]
    await _copy(conn, "outbox", _EFFECT_COLUMNS, effects)


_SEQUENCES = (
    "SELECT setval(pg_get_serial_sequence('tickets', 'id'), max(id)) FROM tickets",
    "SELECT setval(pg_get_serial_sequence('comments', 'id'), max(id)) FROM comments",
)
_EFFECT_COLUMNS = ("key", "kind", "payload", "status", "attempts", "last_error", "created_at")


async def register_machines(deps: Deps) -> None:
    """Every machine but the retired one, as `openase runner` keeps it fresh in Redis."""
    for name in data.MACHINES:
        if name.startswith("retired"):
            continue
        facts = MachineFacts(
            name=name,
            labels=["linux", "gpu"] if name.startswith("gpu") else ["linux"],
            capacity=1 if name == "tiny" else 4,
            running=1,
            clis={"claude_code": "2.1.330", "codex": "0.40.0"},
            disk_free_bytes=50 * GB,
            memory_available_bytes=8 * GB,
            hostname=f"{name}.example",
            sandbox="bubblewrap 0.8.0",
        )
        await deps.redis.hset(machine_key(name), mapping=facts.to_redis())  # type: ignore[misc]  # redis-py's union return
        await deps.redis.sadd(MACHINES_SET, name)  # type: ignore[misc]


async def seed(deps: Deps, args: argparse.Namespace) -> Seeded:
    rng = random.Random(7)  # noqa: S311  # a repeatable data set, not a secret
    now = datetime.now(UTC)
    start = now - timedelta(days=90)
    async with transaction(deps.sessions) as session:
        store_ids = await _publish_store(session, args.harnesses, args.versions)
    world = data.World(rng, start, now, store_ids["harness"], store_ids["skill"], args.repos)
    rows = data.build(world, args.tickets, args.runs)
    busy, small = 1, 2
    data.extra_activity(rows, busy, start)
    busy_run, small_run = rows.run_ids[busy][-1], rows.run_ids[small][-1]
    async with deps.engine.begin() as conn:
        await conn.execute(
            insert(Repository),
            [
                {"id": i + 1, "full_name": name, "html_url": f"https://github.com/{name}"}
                for i, name in enumerate(data.REPO_NAMES[: args.repos])
            ],
        )
        await _copy(conn, "tickets", data.TICKET_COLUMNS, rows.tickets)
        await _copy(conn, "ticket_states", data.STATE_COLUMNS, rows.states)
        await _moments(conn, rows)
        await _copy(conn, "runs", data.RUN_COLUMNS, rows.runs)
        await _copy(conn, "run_versions", data.RUN_VERSION_COLUMNS, rows.run_versions)
        await _copy(conn, "activity", data.ACTIVITY_COLUMNS, rows.activity)
        await _copy(conn, "comments", data.COMMENT_COLUMNS, rows.comments)
        await _copy(conn, "pull_requests", data.PR_COLUMNS, rows.pull_requests)
        await _failures(conn, now)
        events = await _events(conn, busy_run, args.events, args.total_events)
        # Ids were given: the sequences continue after them.
        for sequence in _SEQUENCES:
            await conn.execute(text(sequence))
    async with transaction(deps.sessions) as session:
        await pin_harness(session, busy, "coder", max(1, args.versions - 2))
        # The runs came by COPY, not through the engine: count them as the engine would.
        await rebuild_stats(session)
    await register_machines(deps)
    async with deps.engine.connect() as conn:
        # Plans as on a database that has lived a while (autovacuum has been by).
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("VACUUM ANALYZE"))
        deep = (
            await conn.execute(
                text("SELECT at, id FROM activity ORDER BY at DESC, id DESC OFFSET 5000 LIMIT 1")
            )
        ).one()

    def key(ticket: int) -> str:
        repo, number = str(rows.tickets[ticket - 1][5]).split("#")
        return f"{repo}/{number}"

    counts = {
        "tickets": len(rows.tickets),
        "runs": len(rows.runs),
        "run events": events,
        "activity rows": len(rows.activity),
        "comments": len(rows.comments),
    }
    cursor = f"{deep.at.isoformat()}|activity|{deep.id}"
    return Seeded(busy, small, busy_run, small_run, key(busy), key(small), cursor, counts)
