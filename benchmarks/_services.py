"""The real servers a run needs, started on free loopback ports and always stopped.

They reuse the test suite's helpers (cached_stores_factory.testing.servers): the same
redis-server command line and the same request-counting wrapper around moto's S3 server.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

import pytest

from cached_stores_factory.testing import servers

# start_redis reports a missing binary through pytest's skip/fail outcomes, which are
# BaseExceptions: catch them here so a missing service turns into an "n/a" row.
ServiceMissing = (Exception, pytest.skip.Exception, pytest.fail.Exception)

STARTED: list[subprocess.Popen[bytes]] = []
"""Server processes still running, for the watchdog to stop if a run overstays its time."""

S3_CREDENTIALS = {
    "region_name": "eu-central-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",  # moto accepts any
}


@contextlib.contextmanager
def redis_server() -> Iterator[servers.RedisServer]:
    """A private redis-server with nothing persisted, for the length of the block."""
    process, server = servers.start_redis()
    STARTED.append(process)
    try:
        yield server
    finally:
        STARTED.remove(process)
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def s3_server() -> Iterator[servers.S3Server]:
    """moto's S3 HTTP server on a free loopback port, counting every request it answers."""
    from moto.moto_server import threaded_moto_server as tms
    from moto.moto_server import werkzeug_app
    from werkzeug.serving import make_server

    server = servers.S3Server(f"http://127.0.0.1:{servers.free_port()}")
    host, port = server.endpoint_url.removeprefix("http://").split(":")

    class CountingMotoServer(tms.ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = servers._counting(
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

    moto = CountingMotoServer(ip_address=host, port=int(port), verbose=False)
    moto.start()
    try:
        yield server
    finally:
        moto.stop()
