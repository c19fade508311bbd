"""Scale benchmark (issue #18, target 5): OpenASE at 10,000 mirrored tickets and 200
concurrent runs, then with a second control worker and a third web process joining.

    make bench-scale                                         # the issue's sizes (heavy)
    make bench-scale BENCH_ARGS="--tickets 500 --runs 20 --runners 4 --agent-seconds 10"
    make bench-scale BENCH_ARGS="--tickets 1000 --more-runs 0 --runs-only"  # an engine try

Every part is a real product process on loopback: PostgreSQL and Redis of its own
(bench/chaos/stores.py), `openase serve` x2 (then x3) on ports of their own, `openase
worker` x1 (then x2), `openase runner` x --runners (--slots runs each, at niceness 10 as
`openase up` starts its runner: they share the machine), and the recording fake GitHub
API over HTTP (one installation, one repository whose remote is a local bare git
repository). The agent is the `command` agent running a script that prints a line
about every 0.5 s for --agent-seconds, then writes the file the repository's gate wants.

1. The mirror: --tickets minus the labelled ones as signed `issues.opened` webhooks, split
   over the web processes; how long until all are acknowledged and ingested.
2. --runs tickets labelled `openase` at once (one worker, two web processes), measured
   until every one is in review with no run open and no effect pending: engine tick
   durations (p50/p99/max, from the worker's `engine_tick` log line), how far persisted run
   events are behind the runners' Redis streams (and that none is left unpersisted once
   the batch's runs are over), content-creating GitHub requests per
   installation per minute (from the fake GitHub's request log; GitHub's secondary rate
   limits allow 80 a minute and 500 an hour), peak RSS of each process (VmRSS, each
   second; a runner's own, without its agents), runs per minute, and where the CPU went
   from the labels to the last run in review (bench/scale/cpu.py).
3. A second worker and a third web process join; --more-runs tickets labelled through all
   three web processes, measured the same way; then nothing done twice (one run, one
   status comment per ticket, no duplicate PR or check run, every delivery ingested
   once), throughput before and after, and status-comment updates performed vs
   superseded (coalesced) in the outbox.

`--more-runs 0` leaves phase 3 out; `--runs-only` ends a batch once its runs are over,
without waiting for the paced outbox (at 80 writes a minute, some 13 minutes for 200
tickets): a quick try of an engine change, whose GitHub side is then not all out.

Each number is printed beside its target ("met" / "NOT met") and the figure it replaced;
exits 1 when a target is missed. The working directory (logs of every process) is kept
when something is missed.
"""
