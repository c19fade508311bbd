"""Benchmark: every page of the web UI (issues #7, #16) against a store the size of a busy
team's: 10,000 tickets, 100,000 runs, 1,000,000 agent events.

    make bench-web                                    # the issue's scale, 30 requests a page
    make bench-web BENCH_ARGS="--quick"               # 1,000 tickets, 10,000 runs, 100,000 events
    make bench-web BENCH_ARGS="--tickets 20000 --runs 200000 --total-events 2000000 --show-sql"
    make bench-web BENCH_ARGS="--only dashboard --repeat 100"   # pages whose path has the word

Real PostgreSQL and Redis (embedded, or the throwaway servers in OPENASE_BENCH_DATABASE_URL /
OPENASE_BENCH_REDIS_URL: every table is emptied), migrated, then seeded directly in the
tables with COPY (bench.web.seed; the time it took is printed): `--tickets` mirrored tickets
over `--repos` repositories with their workflow states (mostly done, the rest spread over the
board), authors, assignees, labels and comments; about `--runs` runs spread over them with a
long tail (a mix of outcomes, workflows, providers, harness versions and machines), their
hook results and run -> harness and skill versions; about `--total-events` agent events
(PostgreSQL generates them from AgentEvent templates); the activity log the engine would have
written (state changes, runs sent and finished, PRs opened, commands); failed deliveries and
effects; `--harnesses` harnesses of `--versions` versions each and three skills (published
through the harness store, as the editor does); runner machines registered in Redis as
`openase runner` does (and one known only from its runs). The first ticket is the busiest: a
hundredth of the runs, more activity and comments than its page shows, a pinned harness and
an open PR; its newest run has `--events` agent events. The second ticket is a small one.

Every page is then read through the real app (bot.processes.app.create_app) over an
in-process ASGI client, one request at a time, reads public (no admin token, no sign-in):
`--warmup` requests first, then `--repeat` timed ones (the page list: bench.web.pages).
Prints per page: p50 / p90 / max ms against the target (`--target`, 50 ms p50); the SQL
statements the app sent per request (counted on the engine; BEGIN, ROLLBACK and pool pings
are not statements here) and the median time spent in them; full (generation 2) garbage
collections during the timed requests, the usual cause of a max far above p90; the page's
size; and a verdict. A page is SLOW when its p50 misses the target, VARIES when its number
of statements changes between requests or between the pages of its group (a small ticket's
page and the busiest one's, a rare search and a common one: an N+1), ERROR when it does not
answer 200. Exits 1 and says why when any page is not OK. `--show-sql` prints each page's
statements (the last request's).
"""
