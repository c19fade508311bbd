"""Inside the sandbox: relay loopback TCP ports to the runner's egress proxy (a Unix socket).

    python3 -I -S forward.py [--ready-fd N] SOCKET_PATH LISTEN_SPEC...

Each LISTEN_SPEC is one of

- `PORT`: accept on 127.0.0.1:PORT and relay every connection to SOCKET_PATH as it is. This
  is the proxy port that HTTP_PROXY/HTTPS_PROXY name inside the sandbox (3128, say).
- `PORT=HOST:TPORT`: accept on 127.0.0.1:PORT and, for every connection, ask the proxy for
  `CONNECT HOST:TPORT`; on `200` relay both ways, on anything else close the client's
  connection (the proxy has reported the refusal). So a client that ignores HTTP_PROXY for
  loopback (a local model server on the runner's host at 127.0.0.1:TPORT) reaches it at
  the same address inside.

PORT 0 takes any free port. Readiness: once every port listens, the line
`ready PORT...\\n` (the bound ports, in LISTEN_SPEC order) is written to fd N and fd N is
closed; without --ready-fd the line goes to stdout. A forwarder that cannot start (a bad
argument, a port taken) exits with a message on stderr, which closes N without the line:
a reader should look for the line, not only for EOF.

It runs until killed: SIGTERM and SIGINT end it at once, even when inherited as ignored.
At most MAX_CONNECTIONS connections are relayed at a time; more wait in the listen backlog.

It runs on the runner's interpreter with `-I -S` and imports only built-in modules: no
site, no package of ours, and `_socket`/`_thread` rather than `socket`/`threading`, which
import enum, selectors and collections and would double the ~13 ms it takes to listen.
"""

import _signal  # type: ignore[import-not-found]  # no stubs; `signal` imports enum (+6 ms)
import _socket
import _thread
import sys

CHUNK = 65_536
MAX_CONNECTIONS = 256
MAX_HEAD_BYTES = 65_536
HANDSHAKE_SECONDS = 30.0  # the proxy answers a CONNECT within its own 10 s connect timeout
THREAD_STACK_BYTES = 256 * 1024  # shallow threads: 512 of them in 128 MB of address space

USAGE = "usage: forward.py [--ready-fd N] SOCKET_PATH PORT|PORT=HOST:TPORT..."


class Gate:
    """Admits at most `size` connections at once; the accept loops wait at it when full."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._count = _thread.allocate_lock()
        self._open = _thread.allocate_lock()  # held exactly while no place is free

    def enter(self) -> None:
        self._open.acquire()
        with self._count:
            self._free -= 1
            if self._free > 0:
                self._open.release()

    def leave(self) -> None:
        with self._count:
            self._free += 1
            if self._free == 1:
                self._open.release()


def main(args: list[str]) -> None:
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return
    ready_fd = None
    if args[:1] == ["--ready-fd"]:
        if len(args) < 2 or not args[1].isdigit():
            raise SystemExit(USAGE)
        ready_fd, args = int(args[1]), args[2:]
    if len(args) < 2:
        raise SystemExit(USAGE)
    socket_path, specs = args[0], [parse_spec(text) for text in args[1:]]
    # Ignored signals survive exec: the sandbox's init ignores SIGTERM while it waits.
    for signum in (_signal.SIGTERM, _signal.SIGINT):
        _signal.signal(signum, _signal.SIG_DFL)
    _thread.stack_size(THREAD_STACK_BYTES)
    listeners = [listen(port) for port, _ in specs]
    announce(ready_fd, [listener.getsockname()[1] for listener in listeners])
    gate = Gate(MAX_CONNECTIONS)
    for listener, (_, target) in list(zip(listeners, specs, strict=True))[1:]:
        _thread.start_new_thread(serve, (listener, socket_path, target, gate))
    serve(listeners[0], socket_path, specs[0][1], gate)


def parse_spec(text: str) -> tuple[int, str | None]:
    """`PORT` or `PORT=HOST:TPORT` as (PORT, "HOST:TPORT" or None)."""
    port_text, equals, target = text.partition("=")
    valid = is_port(port_text, zero=True)
    if equals:
        host, _, target_port = target.rpartition(":")
        valid = valid and is_port(target_port, zero=False) and is_host(host)
    if not valid:
        raise SystemExit(f"forward.py: bad listen spec {text!r}\n{USAGE}")
    return int(port_text), target if equals else None


def is_host(text: str) -> bool:
    # Only what can stand in a request line; the proxy judges the name itself.
    plain = text.isascii() and text.isprintable()
    return bool(text) and plain and not any(c in text for c in " /@")


def is_port(text: str, *, zero: bool) -> bool:
    return text.isascii() and text.isdigit() and (0 if zero else 1) <= int(text) <= 65535


def listen(port: int) -> _socket.socket:
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
    except OSError as error:
        raise SystemExit(f"forward.py: cannot listen on 127.0.0.1:{port}: {error}") from None
    return listener


def announce(ready_fd: int | None, ports: list[int]) -> None:
    line = "ready " + " ".join(str(port) for port in ports) + "\n"
    if ready_fd is None:
        sys.stdout.write(line)
        sys.stdout.flush()
        return
    try:
        with open(ready_fd, "wb", buffering=0) as ready:  # closing it is part of the signal
            ready.write(line.encode())
    except OSError as error:  # nobody listening any more: serve anyway
        sys.stderr.write(f"forward.py: cannot signal readiness on fd {ready_fd}: {error}\n")


def serve(listener: _socket.socket, socket_path: str, target: str | None, gate: Gate) -> None:
    """Accept forever, one relaying thread per connection."""
    while True:
        gate.enter()
        try:
            # _socket's accept: the stubs know only socket.accept, which wraps it.
            fd, _ = listener._accept()  # type: ignore[attr-defined]
            client = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
        except OSError:
            gate.leave()
            continue
        try:
            _thread.start_new_thread(relay, (client, socket_path, target, gate))
        except RuntimeError:  # no thread to spare: this client is turned away
            client.close()
            gate.leave()


def relay(client: _socket.socket, socket_path: str, target: str | None, gate: Gate) -> None:
    upstream = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        upstream.connect(socket_path)
        if target is None or open_tunnel(upstream, client, target):
            splice(client, upstream)
    except OSError as error:
        sys.stderr.write(f"forward.py: {describe(client, target)}: {error}\n")
    finally:
        upstream.close()
        client.close()
        gate.leave()


def open_tunnel(upstream: _socket.socket, client: _socket.socket, target: str) -> bool:
    """Ask the proxy for a tunnel to `target`; whether it was granted."""
    upstream.settimeout(HANDSHAKE_SECONDS)
    upstream.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = upstream.recv(CHUNK)
        if not data or len(head) + len(data) > MAX_HEAD_BYTES:
            sys.stderr.write(f"forward.py: {describe(client, target)}: no answer from the proxy\n")
            return False
        head += data
    upstream.settimeout(None)
    head, _, early = head.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if status.split(b" ")[1:2] != [b"200"]:
        answer = status.decode("latin-1")
        sys.stderr.write(f"forward.py: {describe(client, target)}: {answer}\n")
        return False
    if early:  # the target spoke first, and its first bytes came with the proxy's answer
        client.sendall(early)
    return True


def splice(client: _socket.socket, upstream: _socket.socket) -> None:
    """Relay both ways until both directions have ended."""
    finished = _thread.allocate_lock()
    finished.acquire()
    _thread.start_new_thread(pump, (client, upstream, finished))
    pump(upstream, client, None)
    finished.acquire()  # the other direction is done too


def pump(source: _socket.socket, sink: _socket.socket, finished: _thread.LockType | None) -> None:
    """Copy until EOF, then half-close `sink` so its peer sees the end as well."""
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
        sink.shutdown(_socket.SHUT_WR)
    except OSError:
        # One end broke: stop the other direction too, or its thread would wait forever.
        for end in (source, sink):
            try:  # noqa: SIM105 - contextlib would cost the start ~3 ms of imports
                end.shutdown(_socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        if finished is not None:
            finished.release()


def describe(client: _socket.socket, target: str | None) -> str:
    try:
        port = client.getsockname()[1]
    except OSError:
        port = "?"
    return f"127.0.0.1:{port}" + (f" -> {target}" if target else "")


if __name__ == "__main__":
    main(sys.argv[1:])
