"""Issue 18, target 1's yardstick: the minimal Probot app in bench/probot/, run beside ours.

`make bench` sends the same signed deliveries to it, in rounds alternating with openase's,
and prints our accept rate as a ratio of its rate (target >= 0.3x). The app only verifies
the signature and routes the event to an empty handler (bench/probot/app.js); it stores
nothing. Node and npm are needed for this comparison alone: the pinned `probot` is
installed into bench/probot/node_modules by `npm ci` on first use, and the bench runs
without the comparison when they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from adapters.github.verify import sign

APP_DIR = Path(__file__).parent / "probot"
WEBHOOK_PATH = "/api/github/webhooks"  # probot's default
TARGET_RATIO = 0.3
# Written after a successful `npm ci` (which empties node_modules first): the hash of the
# manifest and lock it installed, so a changed pin reinstalls.
_STAMP = APP_DIR / "node_modules" / ".openase-installed"


@dataclass(frozen=True)
class Round:
    """One round of sending to one server."""

    deliveries: int
    seconds: float
    p99_ms: float
    started: float  # time.perf_counter() at its first send

    @property
    def rate(self) -> float:
        return self.deliveries / self.seconds


def install() -> str | None:
    """Install the pinned probot with `npm ci` when missing or stale; why it cannot run, or None."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        return "node and npm are not on PATH (they are needed only for this comparison)"
    wanted = hashlib.sha256(
        (APP_DIR / "package.json").read_bytes() + (APP_DIR / "package-lock.json").read_bytes()
    ).hexdigest()
    if _STAMP.is_file() and _STAMP.read_text() == wanted:
        return None
    print("installing the pinned probot into bench/probot/node_modules (npm ci)")
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return f"`npm ci` failed: {done.stderr.strip()[-400:]}"
    _STAMP.write_text(wanted)
    return None


def _throwaway_private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    return pem.decode()


@contextlib.contextmanager
def running(port: int, secret: str, log: IO[str]) -> Iterator[subprocess.Popen[bytes]]:
    """`probot run ./app.js` on 127.0.0.1:`port`, for as long as the block runs."""
    env = {
        # A clean environment: REDIS_URL, SENTRY_DSN or WEBHOOK_PROXY_URL (smee) inherited
        # from ours would make probot fetch and use them.
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/"),
        "NODE_ENV": "production",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "APP_ID": "1",
        "PRIVATE_KEY": _throwaway_private_key(),
        "WEBHOOK_SECRET": secret,
        "LOG_LEVEL": "warn",
        "LOG_FORMAT": "json",
        # The empty handler calls no API; were anything to, it would hit a closed local
        # port, never GitHub.
        "GHE_HOST": "127.0.0.1:9",
        "GHE_PROTOCOL": "http",
    }
    proc = subprocess.Popen(
        ["node", "node_modules/probot/bin/probot.js", "run", "./app.js"],
        cwd=APP_DIR,
        env=env,
        stdout=log,
        stderr=log,
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def check(proc: subprocess.Popen[bytes], port: int, secret: str, body: bytes) -> str | None:
    """Wait until it answers; None when it takes a signed delivery and refuses a bad
    signature, else what is wrong."""
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await client.get("/ping")).status_code == 200:
                    break
            except httpx.TransportError:
                if proc.poll() is not None:
                    return f"`probot run` exited with status {proc.returncode} (see the log)"
            if time.monotonic() > deadline:
                return "it did not answer GET /ping within 60 s"
            await asyncio.sleep(0.1)
        statuses = []
        for signature in (sign(secret.encode(), body), sign(b"not-the-secret", body)):
            headers = {
                "Content-Type": "application/json",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": signature,
            }
            response = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            statuses.append(response.status_code)
    good, bad = statuses
    if not 200 <= good < 300 or not 400 <= bad < 500:
        return f"a signed delivery got {good} (want 2xx), a bad signature {bad} (want 4xx)"
    print(f"probot: a signed delivery gets {good}, a bad signature {bad}")
    return None


async def start(
    stack: contextlib.ExitStack, port: int, secret: str, log: IO[str], body: bytes
) -> int | None:
    """Install, start and check the app for as long as `stack` lasts: its port, or None (and
    why, printed) when the bench must go on without it."""
    why_not = install()
    if why_not is None:
        proc = stack.enter_context(running(port, secret, log))
        why_not = await check(proc, port, secret, body)
    if why_not is None:
        return port
    print(f"probot comparison skipped: {why_not}")
    stack.close()
    return None


def _versus(ours: float, theirs: float) -> str:
    ratio = ours / theirs
    met = "met" if ratio >= TARGET_RATIO else "NOT met"
    return (
        f"ours {ours:,.0f}/s, probot {theirs:,.0f}/s: {ratio:.2f}x"
        f" (target >= {TARGET_RATIO}x: {met})"
    )


def report(ours: list[Round], probot: list[Round]) -> None:
    """Per round and overall: our accept rate, probot's, and ours/probot beside the target."""
    print("ours / probot:   the same deliveries, connections and machine, in alternate turns")
    for i, (o, p) in enumerate(zip(ours, probot, strict=True), start=1):
        first = "ours" if o.started < p.started else "probot"
        print(
            f"  round {i}, {first} first: {_versus(o.rate, p.rate)};"
            f" p99 ours {o.p99_ms:.1f} ms, probot {p.p99_ms:.1f} ms"
        )
    total_ours = sum(r.deliveries for r in ours) / sum(r.seconds for r in ours)
    total_probot = sum(r.deliveries for r in probot) / sum(r.seconds for r in probot)
    print(f"  all rounds: {_versus(total_ours, total_probot)}")
