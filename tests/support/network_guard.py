"""No test reaches the internet: name lookups and connections beyond loopback fail at once.

respx intercepts httpx before any socket is opened, so a faked API never gets here; anything
that does get here would have left the machine (or hung waiting for DNS).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

_real_getaddrinfo = socket.getaddrinfo
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


class NetworkBlocked(OSError):
    pass


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_loopback(host):
        raise NetworkBlocked(f"tests may not resolve {host!r}: only loopback is reachable")
    return _real_getaddrinfo(host, *args, **kwargs)


def install() -> None:
    socket.getaddrinfo = _guarded_getaddrinfo
