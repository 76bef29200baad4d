"""Real servers on free loopback ports, as pytest fixtures and as plain context managers.

`redis_server` starts a `redis-server` process per session; `redis_cluster` a 3-node Redis
Cluster (`redis-server --cluster-enabled yes`, joined by `redis-cli --cluster create`);
`s3_server` starts moto's ThreadedMotoServer, reached by boto3 over HTTP, and counts every
request it answers.  Where a server cannot start, the tests skip with what to install,
except under CI=true, where a missing service fails the run.  Outside pytest (benchmarks,
demos), `running_redis()`, `running_redis_cluster()` and `running_s3()` do the same and
raise ServiceUnavailable instead.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NoReturn, TypeVar

import attrs
import pytest

__all__ = [
    "RedisCluster",
    "RedisServer",
    "S3Server",
    "ServiceUnavailable",
    "free_cluster_port",
    "free_port",
    "redis_cluster",
    "redis_server",
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


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate, and kill if it has not exited after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
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
class S3Server:
    """moto's S3 HTTP server, with a log of every request it answered."""

    endpoint_url: str
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    _responses: list[_Response] = attrs.field(factory=list)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

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

    def reset(self) -> None:
        """Forget every bucket and object and the request log."""
        request = urllib.request.Request(  # noqa: S310 - an http URL on loopback
            f"{self.endpoint_url}/moto-api/reset", method="POST"
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - loopback only
            pass
        with self._lock:
            self.requests.clear()
            self._responses.clear()

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
