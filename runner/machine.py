"""What a machine tells the control plane about itself: capacity, labels, the agent CLIs on
its PATH with their versions, free disk and memory. Kept fresh in Redis by heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.contract import SCHEMA_VERSION

# name on PATH -> the agent the control plane knows it as
KNOWN_CLIS = {"claude": "claude_code", "codex": "codex", "gemini": "gemini"}
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:[-+.\w]*)?")


@dataclass
class MachineFacts:
    name: str
    labels: list[str]
    capacity: int
    running: int = 0
    clis: dict[str, str] = field(default_factory=dict)  # agent cli -> version
    disk_free_bytes: int = 0
    memory_available_bytes: int = 0
    hostname: str = field(default_factory=socket.gethostname)
    schema_version: int = SCHEMA_VERSION
    started_at: float = field(default_factory=time.time)
    heartbeat_at: float = field(default_factory=time.time)
    # The last Redis outage the runner rode out (a cut-off runner cannot say it is cut off:
    # its entry just expires), and the run events it had to drop so far.
    redis_outage_seconds: float = 0.0
    redis_back_at: float = 0.0
    events_dropped: int = 0
    # runner/sandbox: the tool that confines runs here, or why none can (with the fix).
    sandbox: str = ""
    sandbox_problem: str = ""

    def to_redis(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (lists and dicts as JSON)."""
        return {
            key: json.dumps(value) if isinstance(value, list | dict) else str(value)
            for key, value in asdict(self).items()
        }


async def cli_version(binary: str, within: float = 10.0) -> str | None:
    """`BINARY --version`'s version number, or None when it cannot tell in time."""
    try:
        process = await asyncio.create_subprocess_exec(
            binary,
            "--version",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/nonexistent", "NO_COLOR": "1"},
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return None
    match = _VERSION.search(out.decode(errors="replace"))
    return match.group(0) if match and process.returncode == 0 else None


async def find_clis(path: str | None = None) -> dict[str, str]:
    """Agent CLIs on PATH with their versions; `command` is always available."""
    found = {name: shutil.which(name, path=path) for name in KNOWN_CLIS}
    names = [name for name, where in found.items() if where]
    versions = await asyncio.gather(*(cli_version(str(found[name])) for name in names))
    clis = {
        KNOWN_CLIS[name]: version for name, version in zip(names, versions, strict=True) if version
    }
    clis["command"] = "any"
    return clis


def disk_free(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def memory_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in bytes (0 where /proc is absent)."""
    with contextlib.suppress(OSError):
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0
