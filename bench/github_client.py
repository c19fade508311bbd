"""Benchmark: sequential GitHub App requests, pooled client vs a new client per request.

    make bench-github                         # 300 requests per mode
    make bench-github BENCH_ARGS="--requests 1000"

Serves `{}` over HTTPS (HTTP/1.1 keep-alive, a self-signed P-256 certificate made with
`cryptography`, like api.github.com's ECDSA one) on 127.0.0.1 from another process, then
sends `--requests` sequential `GitHubApp.request` calls as the App (a JWT signed per call, as
in production) in two modes:
  pooled  — the App's one shared httpx client, connections kept alive;
  fresh   — `aclose()` after every request, i.e. a new client and TLS handshake each
            time, as before pooling.
The client verifies the certificate the way production does (`verify=True`: certifi's
bundle, loaded into a new SSL context per client), trusting the local one through
SSL_CERT_FILE pointing at certifi's bundle plus it. Prints requests/s and p50 / p90 / max
latency per mode. Loopback hides the network round trips a handshake costs against GitHub
(about 67 ms measured), so the gap here is the least it will be.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import logging
import multiprocessing
import os
import ssl
import statistics
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path

import certifi
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from adapters.github.client import GitHubApp

HOST = "127.0.0.1"
BODY = b"{}"


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A certificate for 127.0.0.1, its key, and certifi's CA bundle plus it: PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    bundle_path = directory / "bundle.pem"
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path.write_bytes(cert_pem)
    bundle_path.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert_pem)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path, bundle_path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # Headers and body leave in two writes; with Nagle on, the second waits for the
    # client's delayed ACK (40 ms), which would swamp what is measured.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__((HOST, 0), _Handler)
        self._context = context

    def finish_request(self, request: object, client_address: object) -> None:
        # The handshake runs in the connection's own thread, not in the accepting one.
        assert hasattr(request, "fileno")
        tls = self._context.wrap_socket(request, server_side=True)  # type: ignore[arg-type]
        super().finish_request(tls, client_address)


def serve(cert: str, key: str, port_out: Connection) -> None:
    """The server process: report the port, then serve until killed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _TLSServer(context)
    port_out.send(server.server_address[1])
    server.serve_forever()


async def measure(app: GitHubApp, requests: int, *, fresh: bool) -> list[float]:
    latencies = []
    for _ in range(requests):
        started = time.perf_counter()
        await app.request("GET", "/app", installation_id=None)
        latencies.append(time.perf_counter() - started)
        if fresh:
            await app.aclose()  # the next request opens a new client, as before pooling
    await app.aclose()
    return latencies


def _report(mode: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    print(
        f"  {mode:<7}{len(latencies) / sum(latencies):8.0f} req/s   p50 "
        f"{1000 * statistics.median(latencies):6.2f} ms   p90 {1000 * p90:6.2f} ms   "
        f"max {1000 * max(latencies):6.2f} ms"
    )


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="openase-bench-") as tmp:
        cert, key, bundle = self_signed(Path(tmp))
        # What httpx reads with verify=True and trust_env (both githubkit's defaults).
        os.environ["SSL_CERT_FILE"] = str(bundle)
        receive, send = multiprocessing.Pipe(duplex=False)
        server = multiprocessing.Process(target=serve, args=(str(cert), str(key), send))
        server.start()
        try:
            port = receive.recv()
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            app = GitHubApp(
                api_url=f"https://{HOST}:{port}",
                app_id=1,
                private_key=pem.decode(),
            )
            asyncio.run(measure(app, 5, fresh=False))  # warm-up: imports, first JWT
            pooled = asyncio.run(measure(app, args.requests, fresh=False))
            fresh = asyncio.run(measure(app, args.requests, fresh=True))
        finally:
            server.kill()
            server.join()
    print(f"GitHubApp.request over HTTPS on {HOST}, {args.requests} sequential requests each")
    _report("pooled", pooled)
    _report("fresh", fresh)
    gain = statistics.median(fresh) - statistics.median(pooled)
    print(f"  pooling saves {1000 * gain:.2f} ms per request at p50 (loopback; more over a WAN)")


if __name__ == "__main__":
    main()
