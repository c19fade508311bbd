"""Chaos benchmark: does OpenASE ride out its dependencies' outages and its own crashes by
itself, losing nothing and doing nothing twice? (issue 19, "The chaos suite")

    make chaos                                            # every fault, full lengths
    make chaos CHAOS_ARGS="--faults redis,postgres --outage-seconds 5"

Starts PostgreSQL and Redis of its own (Debian's binaries when present, else the embedded
ones) on free loopback ports, `openase serve`, two `openase worker`s and two `openase
runner`s as real processes, and the fake GitHub API over HTTP. Under a steady load of signed
webhooks and labelled tickets (a `command` agent making a small change), injects each fault
in turn: postgres (immediate stop, started again), redis (SIGKILL, started again empty),
worker (SIGKILL, replacement), runner (SIGKILL mid-run, replacement), github (every answer
a 502), redis-cut (the network to Redis cut for longer than the lost-run window). Prints per
fault what was offered, lost, done twice, and how long until everything caught up; exits 1
when a target is missed (zero lost, zero twice, caught up within 60 s, no process exiting
by itself).

Modules: stores (killable PostgreSQL and Redis), cluster (the product's processes, the fake
GitHub, the Redis proxies), load, faults, report (measuring), run (a session of faults).
"""
