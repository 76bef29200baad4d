"""TempfileStore.lease: planted symlinks are refused, and threads of one process exclude each other.

The lease is a POSIX record lock on a stripe file plus a thread lock per stripe (record
locks do not exclude the threads of one process).  Processes, stopped holders and forks are
tested with the Redis lease in tests/test_leases.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cached_stores_factory.errors import StoreError
from cached_stores_factory.testing.stores import take_lease
from cached_stores_factory_tempfile import TempfileStore
from cached_stores_factory_tempfile import _store as tempfile_store

KEY = "the/key"
STRIPE_FILE = (
    f"{int(tempfile_store._entry_name(KEY)[:8], 16) % tempfile_store.LEASE_STRIPES:04d}.lock"
)

# Whether another process could take the POSIX lock on a file right now.
PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except OSError:
    print("held")
"""


def held_against_other_processes(lock_file: Path) -> bool:
    probe = [sys.executable, "-c", PROBE, str(lock_file)]
    answer = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=True)
    return answer.stdout.strip() == "held"


@pytest.mark.parametrize("planted", ["leases", f"leases/{STRIPE_FILE}"])
def test_a_planted_symlink_is_refused_and_never_followed(tmp_path: Path, planted: str):
    store = TempfileStore("t", root=tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "leases").mkdir(exist_ok=True)
    link = store.root / planted
    if link.exists():
        link.rmdir()
    target = outside if planted == "leases" else outside / STRIPE_FILE
    link.symlink_to(target)
    with pytest.raises(StoreError, match="symlink") as caught, store.lease(KEY):
        pass
    assert f"{store!r}: cannot open the " in str(caught.value)
    assert planted.rsplit("/", 1)[-1] in str(caught.value)
    assert list(outside.iterdir()) == []


def test_threads_of_one_process_exclude_each_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(tempfile_store, "LEASE_WAIT_SECONDS", 0.2)
    store = TempfileStore("t", root=tmp_path / "store")
    lock_file = store.root / "leases" / STRIPE_FILE
    with store.lease(KEY):
        assert (
            take_lease(store, KEY)
            == f"{store!r}: lease stripe {STRIPE_FILE[:4]} still held elsewhere after 0.2 s"
        )
        # The other thread gave up without touching the lock file, so the lock still holds.
        assert held_against_other_processes(lock_file)
    assert take_lease(store, KEY) == "held"
    assert not held_against_other_processes(lock_file)
