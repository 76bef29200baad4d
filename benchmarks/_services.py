"""The real servers a run needs: the test suite's own, started on free loopback ports.

`running_redis()` and `running_s3()` (cached_stores_factory.testing.servers) start the same
redis-server command line and the same request-counting moto server as the tests' fixtures,
and always stop them; a missing binary or package raises ServiceUnavailable, which turns the
rows that need it into "n/a" rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from cached_stores_factory.testing.servers import ServiceUnavailable, running_redis, running_s3

__all__ = ["S3_CREDENTIALS", "ServiceUnavailable", "kill_children", "running_redis", "running_s3"]

S3_CREDENTIALS = {
    "region_name": "eu-central-1",
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",  # moto accepts any
}


def kill_children() -> None:
    """Kill this process's child processes (a redis-server, a benchmark child): Linux only.

    The last resort of the watchdog, when the servers' own context managers could not run.
    """
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name is in parentheses and may hold spaces: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[1] == me:
                os.kill(int(stat.parent.name), signal.SIGKILL)
