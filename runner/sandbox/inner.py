"""The first program inside a run's sandbox: limits, egress forwarders, then the agent or hook.

Run by bubblewrap as `python3 -I -S inner.py OPTIONS -- ARGV...` (stdlib only, no site: it
must start in a few milliseconds and import nothing of the runner's). It

- sets the run's resource limits (process count, data size per process, file size, no core
  files), inherited by everything the agent starts;
- starts the egress forwarders (forward.py beside it) when the run's network is the
  allowlist, so 127.0.0.1:PROXY_PORT inside reaches the runner's proxy;
- starts ARGV and watches the sandbox's PID namespace every 50 ms: the number of processes
  and their resident memory. RLIMIT_NPROC refuses forks past the limit for a runner that is
  not root, but the kernel exempts root (uid 0's user struct) in every user namespace, so
  here a sandbox over the limit is stopped; memory over the limit is stopped the same way,
  like a cgroup's OOM kill;
- when ARGV ends, kills whatever it left running (the namespace dies with us anyway) and
  ends with ARGV's exit status.

What happened is written as JSON lines to --report-fd, an inherited pipe that ARGV does not
get: `{"limit": "processes"|"memory", ...}` when a limit was hit, and at the end
`{"exit": CODE}` or `{"signal": N}` (bubblewrap itself would turn a signal into 128+N).
"""

from __future__ import annotations

# Not `signal` (it imports enum) nor `json` (re, enum, collections): together they were a
# third of this program's start-up, ~25 ms before the agent could start (make bench-runner).
import _signal as signal  # type: ignore[import-not-found]  # no stubs
import os
import resource
import select
import sys

POLL_SECONDS = 0.05
PAGE = os.sysconf("SC_PAGE_SIZE")


class Options:
    def __init__(self, args: list[str]) -> None:
        self.report_fd = -1
        self.max_processes = 0
        self.max_memory_mb = 0
        self.max_file_mb = 0
        self.forward: list[str] = []  # forward.py's arguments, empty: no forwarders
        self.argv: list[str] = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--":
                self.argv = args[index + 1 :]
                break
            value = args[index + 1]
            if arg == "--report-fd":
                self.report_fd = int(value)
            elif arg == "--max-processes":
                self.max_processes = int(value)
            elif arg == "--max-memory-mb":
                self.max_memory_mb = int(value)
            elif arg == "--max-file-mb":
                self.max_file_mb = int(value)
            elif arg == "--forward":
                self.forward.append(value)
            else:
                raise SystemExit(f"openase sandbox: unknown option {arg!r}")
            index += 2
        if not self.argv:
            raise SystemExit("openase sandbox: nothing to run")


def to_json(fields: dict[str, object]) -> str:
    """`json.dumps` of the report's flat fields: words, numbers and booleans."""
    items = []
    for name, value in fields.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        items.append(f'"{name}": {text}')
    return "{" + ", ".join(items) + "}"


class Report:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def say(self, **fields: object) -> None:
        if self._fd < 0:
            return
        try:
            os.write(self._fd, (to_json(fields) + "\n").encode())
        except OSError:
            self._fd = -1


def set_limits(options: Options) -> None:
    mb = 1024 * 1024
    limits = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NPROC: options.max_processes,
        resource.RLIMIT_DATA: options.max_memory_mb * mb,
        resource.RLIMIT_FSIZE: options.max_file_mb * mb,
    }
    for kind, value in limits.items():
        if value > 0:
            resource.setrlimit(kind, (value, value))


def start_forwarders(options: Options) -> int | None:
    """forward.py as a child, once every port listens (it closes the ready pipe)."""
    if not options.forward:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    ready_read, ready_write = os.pipe()
    argv = [
        sys.executable,
        "-I",
        "-S",
        os.path.join(here, "forward.py"),
        "--ready-fd",
        str(ready_write),
        *options.forward,
    ]
    pid = os.fork()
    if pid == 0:
        os.close(ready_read)
        os.set_inheritable(ready_write, True)
        os.execv(argv[0], argv)  # noqa: S606  # our own forwarder, no shell wanted
    os.close(ready_write)
    said = b""
    while chunk := os.read(ready_read, 4096):  # "ready PORT...", then EOF
        said += chunk
    os.close(ready_read)
    if not said.startswith(b"ready"):
        # It said why on stderr; without it the run would have no network at all. Ending
        # without a report line makes the runner call this a sandbox that could not start.
        os.waitpid(pid, 0)
        raise SystemExit(1)
    return pid


def start(argv: list[str]) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    try:
        # As subprocess does: Python ignores SIGPIPE and SIGXFSZ, and ignored signals
        # survive exec (`yes | head` would never end; a file past the limit would not stop
        # its writer).
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        os.execvp(argv[0], argv)  # noqa: S606  # the run's program, as given
    except OSError as error:
        os.write(2, f"openase sandbox: cannot start {argv[0]!r}: {error}\n".encode())
    os._exit(127)


def processes() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def resident_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    return total


def kill_all() -> None:
    """Everything in the namespace but its init (bubblewrap) and us."""
    try:  # noqa: SIM105  # not contextlib: every import here delays the agent's start
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def watch(child: int, options: Options, report: Report) -> int:
    """Wait for the child, enforcing the limits; its wait status."""
    pidfd = os.pidfd_open(child)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    told: set[str] = set()
    memory_limit = options.max_memory_mb * 1024 * 1024
    while True:
        if poller.poll(POLL_SECONDS * 1000):
            _, status = os.waitpid(child, 0)
            return status
        pids = processes()
        if options.max_processes and len(pids) >= options.max_processes:
            if "processes" not in told:
                told.add("processes")
                report.say(limit="processes", value=options.max_processes, seen=len(pids))
            if len(pids) > options.max_processes:  # not refused: root is exempt from NPROC
                report.say(limit="processes", value=options.max_processes, stopped=True)
                kill_all()
        if memory_limit and resident_bytes(pids) > memory_limit:
            report.say(limit="memory", value=options.max_memory_mb, stopped=True)
            kill_all()


def main() -> None:
    options = Options(sys.argv[1:])
    if options.report_fd >= 0:
        os.set_inheritable(options.report_fd, False)  # neither the agent nor the forwarders
    report = Report(options.report_fd)
    # The runner stops a run by signalling the whole group: the agent winds down in its
    # grace time while we wait for it (dying first would kill it at once with the namespace).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    forwarder = start_forwarders(options)
    set_limits(options)
    child = start(options.argv)
    status = watch(child, options, report)
    if forwarder is not None:
        os.kill(forwarder, signal.SIGKILL)
    kill_all()
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        report.say(signal=number)
        os._exit(128 + number)
    code = os.waitstatus_to_exitcode(status)
    report.say(exit=code)
    os._exit(code)


if __name__ == "__main__":
    main()
