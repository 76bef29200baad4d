"""Faults on demand, for tests of what a store does when its server misbehaves.

Two tools, each a plain context manager (usable from benchmarks and scripts) and a pytest
fixture (`pytest_plugins = ["cached_stores_factory.testing.faults"]`):

- `controlled_redis()` / `redis_control`: a private `redis-server` that a test can pause
  (SIGSTOP: connections are accepted by the kernel, then nothing answers), resume, kill and
  restart on the same port.
- `running_fault_proxy(upstream)` / `FaultProxy`: a loopback HTTP proxy to put between
  boto3 and an S3 endpoint (`endpoint_url=proxy.endpoint_url`).  It forwards every request
  and logs it; planned faults replace or damage the answers to chosen requests: a 503
  SlowDown or another S3 error, a connection reset, a body cut short under its full
  Content-Length, a slow first byte, a flipped byte.

Both only ever listen on 127.0.0.1, hold a bounded number of connections and threads, and
stop when their block ends.  `tmpfs(path, size)` mounts a small filesystem (as root) that a
test can fill up or remount read-only under a local store.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import attrs
import pytest

from .servers import RedisServer, _required, free_port, start_redis

__all__ = [
    "Fault",
    "FaultProxy",
    "ProxiedRequest",
    "RedisControl",
    "controlled_redis",
    "corrupt",
    "fault_proxy",
    "redis_control",
    "reset",
    "running_fault_proxy",
    "s3_error",
    "slow_down",
    "slow_first_byte",
    "tmpfs",
    "truncate",
]


# -- Redis that can be paused, killed and restarted ------------------------------------------


@attrs.define
class RedisControl:
    """A private redis-server process and the controls to misbehave it."""

    server: RedisServer
    _process: subprocess.Popen[bytes]
    paused: bool = False

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but no command is ever answered."""
        self._process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT: the server answers again, including what was sent while it was paused."""
        self._process.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        """SIGKILL, as a crash: every connection is reset, every entry is gone."""
        if self.running:
            self._process.kill()
        self._process.wait(timeout=10)
        self.paused = False

    def restart(self) -> None:
        """Kill the server if it runs, then start a new, empty one on the same port."""
        self.kill()
        self._process, self.server = start_redis(self.server.port)

    def stop(self) -> None:
        """End the server for good (resuming it first, so that it can terminate)."""
        if not self.running:
            return
        if self.paused:
            self.resume()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def controlled_redis(port: int | None = None) -> Iterator[RedisControl]:
    """A redis-server of this block's own, always stopped after it."""
    process, server = start_redis(port)
    control = RedisControl(server, process)
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture
def redis_control() -> Iterator[RedisControl]:
    """A private redis-server for one test, which the test may pause, kill and restart."""
    yield from _required(controlled_redis())


# -- the fault proxy ---------------------------------------------------------------------------


@attrs.frozen
class Fault:
    """What to do to one request, instead of answering it faithfully.

    `kind` is "slow_down" (answer 503 SlowDown without forwarding), "error" (answer S3's
    error `code` with HTTP `status` without forwarding), "reset" (close the
    connection with a TCP reset, nothing answered), "truncate" (forward, send the headers
    with the full Content-Length, then `keep` bytes of the body and a reset), "slow" (wait
    `delay` seconds before the first byte of the forwarded answer) or "corrupt" (forward,
    with the body's byte at offset `keep` flipped, as a faulty middlebox would).
    """

    kind: str = attrs.field(
        validator=attrs.validators.in_(
            ("slow_down", "error", "reset", "truncate", "slow", "corrupt")
        )
    )
    keep: int = 0
    delay: float = 0.0
    status: int = 503
    code: str = "SlowDown"


def slow_down() -> Fault:
    return Fault("slow_down")


def s3_error(status: int, code: str) -> Fault:
    """S3's error `code` with HTTP `status` (409 RestoreAlreadyInProgress, say)."""
    return Fault("error", status=status, code=code)


def reset() -> Fault:
    return Fault("reset")


def truncate(keep: int) -> Fault:
    return Fault("truncate", keep=keep)


def slow_first_byte(delay: float) -> Fault:
    return Fault("slow", delay=delay)


def corrupt(offset: int = 0) -> Fault:
    return Fault("corrupt", keep=offset)


@attrs.frozen
class ProxiedRequest:
    """One request the proxy received, and the fault it met (None: forwarded faithfully)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    status: int | None  # the status sent to the client; None when the connection was reset
    fault: Fault | None


@attrs.define
class _Plan:
    fault: Fault
    times: int
    method: str | None
    path_contains: str
    after: int  # matching requests to let through first


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}
)


def _error_body(code: str) -> bytes:
    message = "Please reduce your request rate." if code == "SlowDown" else code
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error>"
    ).encode()


_MAX_CONNECTIONS = 32
_MAX_BODY = 256 * 1024 * 1024
_SOCKET_TIMEOUT = 30.0


@attrs.define(eq=False)
class FaultProxy:
    """The proxy's address, its request log and its fault plan.  Thread-safe.

    `plan(fault, times=N, method=..., path_contains=..., after=K)` lets K matching requests
    through, then applies `fault` to the next N; plans apply in the order they were made.
    """

    upstream: str
    endpoint_url: str = ""
    requests: list[ProxiedRequest] = attrs.field(factory=list)
    _plans: list[_Plan] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def plan(
        self,
        fault: Fault,
        *,
        times: int = 1,
        method: str | None = None,
        path_contains: str = "",
        after: int = 0,
    ) -> None:
        with self._lock:
            self._plans.append(_Plan(fault, times, method, path_contains, after))

    def clear(self) -> None:
        """Forget every plan and the request log."""
        with self._lock:
            self._plans.clear()
            self.requests.clear()

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (method is None or r.method == method) and path_contains in r.path
            )

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for plan in self._plans:
                if plan.times <= 0:
                    continue
                if (plan.method is None or plan.method == method) and plan.path_contains in path:
                    if plan.after > 0:
                        plan.after -= 1
                        continue
                    plan.times -= 1
                    return plan.fault
            return None

    def _log(self, request: ProxiedRequest) -> None:
        with self._lock:
            self.requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as boto3's connection pool expects
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def _do(self) -> None:
        proxy = self.server.proxy
        method, path = self.command, self.path
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self._request_body(headers)
        fault = proxy._fault_for(method, path)
        if fault is not None and fault.kind == "reset":
            proxy._log(ProxiedRequest(method, path, headers, None, fault))
            self._reset()
            return
        if fault is not None and fault.kind in ("slow_down", "error"):
            proxy._log(ProxiedRequest(method, path, headers, fault.status, fault))
            self._answer(
                fault.status, [("Content-Type", "application/xml")], _error_body(fault.code)
            )
            return
        status, reply_headers, reply_body = self._forward(method, path, headers, body)
        proxy._log(ProxiedRequest(method, path, headers, status, fault))
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "corrupt" and fault.keep < len(reply_body):
            damaged = bytearray(reply_body)
            damaged[fault.keep] ^= 0x01
            reply_body = bytes(damaged)
        if fault is not None and fault.kind == "truncate":
            self._answer(status, reply_headers, reply_body, keep=fault.keep)
            self._reset()
            return
        self._answer(status, reply_headers, reply_body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _do

    def _request_body(self, headers: dict[str, str]) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailer fields
            return b"".join(parts)
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            raise ValueError(f"request body over {_MAX_BODY} bytes")
        return self.rfile.read(length)

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urllib.parse.urlsplit(self.server.proxy.upstream)
        connection = http.client.HTTPConnection(
            target.hostname or "127.0.0.1", target.port, timeout=_SOCKET_TIMEOUT
        )
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    connection.putheader(name, value)
            if body or method in ("PUT", "POST"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            data = response.read()
            kept = [
                (name, value)
                for name, value in response.getheaders()
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
            ]
            length = response.getheader("Content-Length")
            if method == "HEAD" and length is not None:
                kept.append(("Content-Length", length))
            return response.status, kept, data
        finally:
            connection.close()

    def _answer(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, keep: int = -1
    ) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body if keep < 0 else body[:keep])
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a crashed server or a middlebox would."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.close()


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self._slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        super().__init__(("127.0.0.1", free_port()), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(timeout=_SOCKET_TIMEOUT):
            self.shutdown_request(request)
            return
        request.settimeout(_SOCKET_TIMEOUT)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is part of the game, not a failure."""


@contextlib.contextmanager
def running_fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of `upstream` (an http:// URL) for the length of the block."""
    proxy = FaultProxy(upstream)
    server = _ProxyServer(proxy)
    proxy.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="csf-fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def fault_proxy(s3_server: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of the session's moto S3 server, for one test."""
    with running_fault_proxy(s3_server.endpoint_url) as proxy:
        yield proxy


# -- a filesystem that fills up or goes read-only --------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` ("1m") mounted at `path`, made here; skips where mounting is refused.

    Mounting needs root.  `subprocess.run(["mount", "-o", "remount,ro", str(path)])` makes it
    read-only; writing past `size` fails with ENOSPC.
    """
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
