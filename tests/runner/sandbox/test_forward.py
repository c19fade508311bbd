"""forward.py as the sandbox runs it: a real subprocess of `python -I -S`, its loopback
ports relayed to a real EgressProxy on a Unix socket."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import runner.sandbox.forward
from tests.runner.sandbox.test_proxy import (
    WAIT,
    Echo,
    Origin,
    echo,
    origin,
    running_proxy,
    sock,
)

__all__ = ["echo", "origin", "sock"]  # fixtures shared with test_proxy.py

FORWARD = Path(runner.sandbox.forward.__file__)


@dataclass
class Forwarder:
    process: asyncio.subprocess.Process
    ready: bytes  # all that came through the ready fd
    ports: list[int]  # as announced, in LISTEN_SPEC order


@asynccontextmanager
async def forwarding(*args: str, launcher: tuple[str, ...] = ()) -> AsyncIterator[Forwarder]:
    """forward.py started with `--ready-fd` and `args`, yielded once the fd has closed."""
    ready_read, ready_write = os.pipe()
    process = await asyncio.create_subprocess_exec(
        *launcher,
        sys.executable,
        "-I",
        "-S",
        str(FORWARD),
        "--ready-fd",
        str(ready_write),
        *args,
        pass_fds=(ready_write,),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(ready_write)
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(read_to_end, ready_read), WAIT)
        words = ready.split()
        ports = [int(word) for word in words[1:]] if words[:1] == [b"ready"] else []
        yield Forwarder(process, ready, ports)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.communicate(), WAIT)


def read_to_end(fd: int) -> bytes:
    with open(fd, "rb", buffering=0) as pipe:
        return pipe.read()


async def stderr_of(forwarder: Forwarder, *, stop: bool) -> str:
    """What the forwarder said, once it has ended (`stop`: stopped by us)."""
    # Only a running forwarder is killed: Popen.send_signal polls first and so could reap an
    # exited one under asyncio's child watcher, which would then report status 255.
    if stop:
        forwarder.process.kill()
    _, stderr = await asyncio.wait_for(forwarder.process.communicate(), WAIT)
    return stderr.decode()


async def test_it_announces_its_ports_on_the_ready_fd_and_closes_it(sock: Path) -> None:
    async with running_proxy(sock), forwarding(str(sock), "0", "0=127.0.0.1:1") as forwarder:
        assert forwarder.ready == b"ready %d %d\n" % tuple(forwarder.ports)
        for port in forwarder.ports:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()


def fetch_through_proxy(proxy_port: int, url: str) -> bytes:
    # No environment: a no_proxy there would send the request around the proxy.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{proxy_port}"})
    )
    with opener.open(url, timeout=WAIT) as response:
        body: bytes = response.read()
        return body


async def test_the_proxy_port_relays_http_proxy_requests(
    sock: Path, origin: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)  # urllib would bypass the proxy for loopback
    url = f"http://127.0.0.1:{origin.port}/through"
    async with (
        running_proxy(sock, f"127.0.0.1:{origin.port}") as run,
        forwarding(str(sock), "0") as forwarder,
    ):
        body = await asyncio.to_thread(fetch_through_proxy, forwarder.ports[0], url)
    assert body == b"hello from origin"
    assert origin.heads[0].startswith("GET /through HTTP/1.1\r\n")
    assert run.connects == [("127.0.0.1", origin.port)]


async def test_a_tunnel_port_reaches_its_target_at_the_same_address(sock: Path, echo: Echo) -> None:
    async with (
        running_proxy(sock, f"127.0.0.1:{echo.port}") as run,
        forwarding(str(sock), f"0=127.0.0.1:{echo.port}") as forwarder,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.ports[0])
        try:
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), WAIT) == b"ping"
            writer.write_eof()  # half-closed all the way to the target and back
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()
    assert run.connects == [("127.0.0.1", echo.port)]


async def test_a_tunnel_to_a_refused_target_closes_the_client(sock: Path, echo: Echo) -> None:
    async with (
        running_proxy(sock) as run,
        forwarding(str(sock), f"0=127.0.0.1:{echo.port}") as forwarder,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", forwarder.ports[0])
        try:
            assert await asyncio.wait_for(reader.read(), WAIT) == b""
        finally:
            writer.close()
        stderr = await stderr_of(forwarder, stop=True)
    assert [(refusal.host, refusal.port) for refusal in run.refusals] == [("127.0.0.1", echo.port)]
    assert f"-> 127.0.0.1:{echo.port}: HTTP/1.1 403 Forbidden" in stderr
    assert echo.connections == 0


@pytest.mark.parametrize("spec", ["x", "70000", "1=127.0.0.1", "1=:80", "1=a b:80", "1=h:0"])
async def test_a_bad_listen_spec_fails_without_the_ready_line(sock: Path, spec: str) -> None:
    async with forwarding(str(sock), "0", spec) as forwarder:
        stderr = await stderr_of(forwarder, stop=False)
    assert forwarder.ready == b""
    assert forwarder.process.returncode == 1
    assert f"bad listen spec {spec!r}" in stderr


async def test_a_port_in_use_fails_without_the_ready_line(sock: Path, echo: Echo) -> None:
    async with forwarding(str(sock), str(echo.port)) as forwarder:
        stderr = await stderr_of(forwarder, stop=False)
    assert forwarder.ready == b""
    assert f"cannot listen on 127.0.0.1:{echo.port}" in stderr


async def test_sigterm_ends_it_even_when_inherited_as_ignored(sock: Path) -> None:
    # The sandbox's init ignores SIGTERM, and an ignored signal survives exec.
    ignoring = ("/bin/sh", "-c", 'trap "" TERM; exec "$@"', "sh")
    async with forwarding(str(sock), "0", launcher=ignoring) as forwarder:
        assert forwarder.ports
        forwarder.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(forwarder.process.wait(), WAIT) == -signal.SIGTERM


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("tunnelled", [False, True], ids=["absolute-form", "connect"])
async def test_curl_through_the_forwarder(sock: Path, origin: Origin, tunnelled: bool) -> None:
    url = f"http://127.0.0.1:{origin.port}/curl"
    async with (
        running_proxy(sock, f"127.0.0.1:{origin.port}") as run,
        forwarding(str(sock), "0") as forwarder,
    ):
        curl = await asyncio.create_subprocess_exec(
            "curl",
            "-q",  # no ~/.curlrc
            "--silent",
            "--show-error",
            "--max-time",
            str(WAIT),
            "--proxy",
            f"http://127.0.0.1:{forwarder.ports[0]}",
            *(["--proxytunnel"] if tunnelled else []),
            url,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},  # no no_proxy
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(curl.communicate(), WAIT * 2)
    assert curl.returncode == 0, stderr.decode()
    assert stdout == b"hello from origin"
    assert run.connects == [("127.0.0.1", origin.port)]
    # Through a tunnel the origin sees curl's own request; otherwise the proxy's rewrite.
    assert ("Connection: close\r\n" in origin.heads[0]) is not tunnelled
