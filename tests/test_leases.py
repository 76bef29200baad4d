"""Per-key leases across real processes: a stopped or forked holder never blocks a key for good.

Each kind of local store that offers a lease (tempfile: a lock file; Redis: redis-py's Lock)
is taken by a separate Python process, which is stopped (SIGSTOP) or forked, and another
process must still get the key: by taking the lease, or by a StoreError after a bounded wait
(the engine then goes on without a lease).  Waits on other processes are guarded by
timeouts, so a lease that blocks for good fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the lease takers import fleet_workers

import fleet_workers

from cached_stores_factory import Store
from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory.testing.stores import take_lease
from cached_stores_factory_redis._lease import DEFAULT_LEASE_SECONDS

pytestmark = [pytest.mark.redis, pytest.mark.slow]

KEY = "the/key"
GUARD_SECONDS = 20  # far above any bounded wait: reaching it means the lease blocks for good

# Takes KEY's lease in a fresh interpreter and prints "held" (then, with "hold", keeps it
# until its stdin closes) or "refused" (a StoreError: the wait for another holder ran out).
TAKER = """
import sys
sys.path.insert(0, sys.argv[1])
from fleet_workers import make_local
from cached_stores_factory.errors import StoreError
kind, where, mode, key, lease_timeout = sys.argv[2:7]
store = make_local(kind, where, lease_timeout=float(lease_timeout))
try:
    with store.lease(key):
        print("held", flush=True)
        if mode == "hold":
            sys.stdin.read()
except StoreError:
    print("refused", flush=True)
"""


@pytest.fixture(params=["tempfile", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> str:
    """The local store's address for fleet_workers.make_local, of the kind in the test's id."""
    if request.param == "tempfile":
        return str(tmp_path / "local")
    return f"{redis_server.host}:{redis_server.port}/leases-{uuid.uuid4().hex[:8]}:"


def kind_of(where: str) -> str:
    return "tempfile" if where.startswith("/") else "redis"


def local(where: str) -> Store:
    return fleet_workers.make_local(kind_of(where), where, lease_timeout=DEFAULT_LEASE_SECONDS)


def taker(where: str, mode: str) -> list[str]:
    arguments = [str(Path(__file__).parent), kind_of(where), where, mode, KEY]
    return [sys.executable, "-c", TAKER, *arguments, str(DEFAULT_LEASE_SECONDS)]


def try_in_another_process(where: str) -> str:
    """'held' or 'refused': what a separate process got when it asked for KEY's lease."""
    done = subprocess.run(
        taker(where, "try"), capture_output=True, text=True, timeout=GUARD_SECONDS, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def holder(where: str) -> Iterator[subprocess.Popen[str]]:
    """A separate process holding KEY's lease; killed after the test, stopped or not."""
    process = subprocess.Popen(
        taker(where, "hold"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.kill()
        process.wait(GUARD_SECONDS)


def test_a_stopped_holder_blocks_the_key_only_for_a_bounded_time(
    where: str, holder: subprocess.Popen[str]
):
    os.kill(holder.pid, signal.SIGSTOP)
    outcome = take_lease(local(where), KEY, guard=GUARD_SECONDS)
    if kind_of(where) == "redis":  # the stopped holder's lease expired: the waiter has it
        assert outcome == "held"
    else:  # a lock file has no expiry: the waiter gave up and the engine goes on without
        assert "still held elsewhere after" in outcome


@pytest.mark.parametrize("child_leaves", [True, False], ids=["child-leaves", "child-stays"])
def test_a_forked_child_neither_keeps_nor_releases_its_parents_lease(
    where: str, child_leaves: bool
):
    lease = local(where).lease(KEY)
    assert lease is not None
    lease.__enter__()
    readable, writable = os.pipe()
    child = os.fork()
    if child == 0:  # leave the block (or not), then live on with whatever the fork gave it
        try:
            os.close(readable)
            if child_leaves:
                lease.__exit__(None, None, None)
            os.write(writable, b"ready")
            signal.pause()
        finally:
            os._exit(0)
    os.close(writable)
    try:
        assert os.read(readable, 5) == b"ready"
        if child_leaves:  # the child's exit from the block released nothing of the parent's
            assert try_in_another_process(where) == "refused"
        lease.__exit__(None, None, None)
        # The parent released it: the child, alive (and maybe still in the block), holds nothing.
        assert try_in_another_process(where) == "held"
    finally:
        os.close(readable)
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
