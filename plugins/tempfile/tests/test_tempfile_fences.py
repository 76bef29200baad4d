"""TempfileStore's fences hold across real processes, threads, lost state and fork."""

from __future__ import annotations

import functools
import io
import itertools
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cached_stores_factory.errors import StoreError
from cached_stores_factory.testing.processes import StoreProcess
from cached_stores_factory_tempfile import TempfileStore, _fences
from cached_stores_factory_tempfile._fences import FENCE_STRIPES
from cached_stores_factory_tempfile._store import _entry_name


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TempfileStore]:
    with TempfileStore("t", root=tmp_path / "store") as store:
        yield store


def processes(root: Path, count: int) -> list[StoreProcess]:
    return [StoreProcess(functools.partial(TempfileStore, "t", root=root)) for _ in range(count)]


def stripe(key: str) -> int:
    return int(_entry_name(key)[:8], 16) % FENCE_STRIPES


def same_stripe_as(key: str, start: str = "s") -> str:
    """Another key, beginning with `start`, whose fence shares `key`'s stripe."""
    return next(k for n in itertools.count() if stripe(k := f"{start}{n}") == stripe(key))


def test_a_wiped_fence_directory_refuses_every_earlier_token(store: TempfileStore):
    before = store.fence("k")
    shutil.rmtree(store.root / "fences")
    assert store.put_fenced("k", io.BytesIO(b"old"), etag=None, fence=before or "") is None
    assert "k" not in store
    after = store.fence("k")
    assert after not in (None, before)
    assert store.put_fenced("k", io.BytesIO(b"new"), etag=None, fence=after or "") is not None
    assert store.get("k") == b"new"


def test_a_planted_symlink_for_the_fence_file_is_refused(store: TempfileStore, tmp_path: Path):
    (store.root / "fences").mkdir(mode=0o700, exist_ok=True)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    (store.root / "fences" / "stripes").symlink_to(target)
    for change in (lambda: store.begin_change("k", hold=60), lambda: store.fence("k")):
        with pytest.raises(StoreError, match="symbolic links"):
            change()
    assert target.read_bytes() == b""


def test_a_change_of_one_key_moves_the_fence_of_its_stripe_only(store: TempfileStore):
    neighbour = same_stripe_as("k")
    token = store.fence("k")
    store.end_change(neighbour, store.begin_change(neighbour, hold=60)[1])
    assert store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token or "") is None
    elsewhere = next(k for n in itertools.count() if stripe(k := f"o{n}") != stripe("k"))
    token = store.fence("k")
    store.end_change(elsewhere, store.begin_change(elsewhere, hold=60)[1])
    assert store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token or "") is not None


def test_a_stripe_full_of_changes_marks_the_whole_stripe_until_they_lapse(store: TempfileStore):
    keys = [same_stripe_as("k", f"m{n}-") for n in range(5)]
    marks = [store.begin_change(key, hold=600)[1] for key in keys]
    assert store.fence("k") is None  # five marks in four slots: the stripe is marked
    for key, mark in zip(keys, marks, strict=True):
        store.end_change(key, mark)
    assert store.fence("k") is None  # a stripe mark only lapses


class Interleavings:
    """Fetches and writes of three keys by three processes, advanced one call at a time.

    Each process runs at most one operation; a write of a key waits for the one in flight
    (as the engine's lease makes it).  The remote is `remote`, versions count up.
    """

    def __init__(self, store: TempfileStore, workers: list[StoreProcess], keys: list[str]):
        self.store = store
        self.workers = workers
        self.keys = keys
        self.remote = dict.fromkeys(keys, 0)
        self.completed = dict.fromkeys(keys, 0)  # the version of the last completed write
        self.versions = itertools.count(1)
        self.running: dict[int, list[object]] = {}
        self.writing: set[str] = set()

    def step(self, worker: int, choice: int) -> None:
        operation = self.running.get(worker)
        if operation is None:
            self.start(worker, choice)
        elif operation[0] == "fetch":
            self.fetch(worker, operation)
        else:
            self.write(worker, operation)
        self.check()

    def start(self, worker: int, choice: int) -> None:
        key = self.keys[choice % len(self.keys)]
        process = self.workers[worker]
        if choice >= 8:  # lost state: the fence file goes
            (self.store.root / "fences" / "stripes").unlink(missing_ok=True)
        elif choice < 4 or key in self.writing:
            self.running[worker] = ["fetch", key, process.call("fence", key), None]
        else:
            hold = 0.0 if choice == 7 else 600.0  # a hold that lapses at once, or not
            _removed, mark = process.call("begin_change", key, hold)
            self.writing.add(key)
            self.running[worker] = ["write", key, "begun", mark]

    def fetch(self, worker: int, operation: list[object]) -> None:
        _, key, token, data = operation
        assert isinstance(key, str)
        if data is None:  # the remote read
            operation[3] = str(self.remote[key]).encode()
            return
        if token is not None:
            self.workers[worker].call("put_fenced", key, data, token)
        del self.running[worker]

    def write(self, worker: int, operation: list[object]) -> None:
        _, key, phase, mark = operation
        assert isinstance(key, str)
        if phase == "begun":
            self.remote[key] = next(self.versions)
            operation[2] = "remote written"
            return
        process = self.workers[worker]
        token = process.call("end_change", key, mark)
        self.completed[key] = self.remote[key]
        if token is not None:  # None: its mark lapsed (hold 0), so it stores nothing
            process.call("put_fenced", key, str(self.remote[key]).encode(), token)
        self.writing.discard(key)
        del self.running[worker]

    def check(self) -> None:
        """No copy is older than a write that completed; none is newer than the remote."""
        for key in self.keys:
            if key in self.store:
                version = int(self.store.get(key))
                assert self.completed[key] <= version <= self.remote[key], (key, version)

    def finish(self) -> None:
        """Run every operation to its end; then each copy is the remote's, or missing."""
        while self.running:
            self.step(next(iter(self.running)), 0)
        for key in self.keys:
            if key in self.store:
                assert int(self.store.get(key)) == self.remote[key], key


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[StoreProcess]]]:
    root = tmp_path_factory.mktemp("interleavings") / "store"
    TempfileStore("t", root=root).close()
    workers = processes(root, 3)
    yield root, workers
    for worker in workers:
        worker.close()


_examples = itertools.count()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 9)), min_size=10, max_size=60))
def test_interleaved_fetches_and_writes_in_three_processes_never_store_older_bytes(
    shared: tuple[Path, list[StoreProcess]], steps: list[tuple[int, int]]
):
    root, workers = shared
    example = next(_examples)
    first = f"e{example}/a"
    keys = [first, f"e{example}/b", same_stripe_as(first, f"e{example}/c")]
    with TempfileStore("t", root=root) as store:
        run = Interleavings(store, workers, keys)
        for worker, choice in steps:
            run.step(worker, choice)
        run.finish()


def test_a_fork_inside_a_section_blocks_no_fence_after_it(store: TempfileStore, tmp_path: Path):
    """A child forked while a thread holds a stripe neither inherits its lock nor its
    process lock: the parent, the child and other processes all fence afterwards."""
    inside, release = threading.Event(), threading.Event()
    publish = store._publish

    def publish_slowly(temp: str, name: str) -> None:
        inside.set()
        release.wait(60)
        publish(temp, name)

    store._publish = publish_slowly  # type: ignore[method-assign]
    token = store.fence("k")
    results: list[object] = []
    thread = threading.Thread(
        target=lambda: results.append(
            store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token or "")
        )
    )
    thread.start()
    assert inside.wait(60)
    report_read, report_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fence of another stripe, then live on until killed
        try:
            other = next(k for n in itertools.count() if stripe(k := f"o{n}") != stripe("k"))
            os.write(report_write, b"ok" if store.fence(other) else b"none")
            time.sleep(600)
        finally:
            os._exit(0)
    try:
        ready, _, _ = select.select([report_read], [], [], 30)
        assert ready, "the forked child blocked on its first fence"
        assert os.read(report_read, 2) == b"ok"
        release.set()
        thread.join(60)
        store._publish = publish  # type: ignore[method-assign]
        assert results and results[0] is not None
        with StoreProcess(functools.partial(TempfileStore, "t", root=store.root)) as other:
            removed, mark = other.call("begin_change", "k", 600, timeout=30)
            assert removed is True
            written = other.call("end_change", "k", mark, timeout=30)
        assert store.put_fenced("k", io.BytesIO(b"w"), etag=None, fence=written) is not None
        assert store.get("k") == b"w"
    finally:
        release.set()
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(report_read)
        os.close(report_write)


def test_a_closed_store_refuses_every_fence_call(tmp_path: Path):
    store = TempfileStore("t", root=tmp_path / "store")
    token = store.fence("k")
    store.close()
    calls = (
        lambda: store.fence("k"),
        lambda: store.begin_change("k", hold=60),
        lambda: store.end_change("k", ""),
        lambda: store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token or ""),
    )
    for call in calls:
        with pytest.raises(StoreError, match="closed"):
            call()


STOPPED_IN_A_SECTION = """
import io, os, signal, sys
from cached_stores_factory_tempfile import TempfileStore
store = TempfileStore("t", root=sys.argv[1])
token = store.fence("k")
store._publish = lambda temp, name: os.kill(os.getpid(), signal.SIGSTOP)
store.put_fenced("k", io.BytesIO(b"v"), etag=None, fence=token)
"""


def test_a_process_stopped_inside_a_section_blocks_its_stripe_only_for_a_while(
    store: TempfileStore, monkeypatch: pytest.MonkeyPatch
):
    """The others fail after SECTION_TIMEOUT instead of hanging; the stripe frees when the
    stopped process dies."""
    monkeypatch.setattr(_fences, "SECTION_TIMEOUT", 0.5)
    stopped = subprocess.Popen([sys.executable, "-c", STOPPED_IN_A_SECTION, str(store.root)])
    try:
        _, status = os.waitpid(stopped.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), status
        for change in (lambda: store.fence("k"), lambda: store.begin_change("k", hold=60)):
            with pytest.raises(StoreError, match=r"stayed held for over 0\.5 s"):
                change()
        other = next(k for n in itertools.count() if stripe(k := f"o{n}") != stripe("k"))
        assert store.fence(other) is not None
    finally:
        stopped.kill()
        stopped.wait(30)
    assert store.begin_change("k", hold=60)[0] is False
    assert store.fence("k") is None


def test_a_refused_fetch_leaves_no_file_behind(store: TempfileStore):
    token = store.fence("k")
    store.end_change("k", store.begin_change("k", hold=60)[1])
    assert store.put_fenced("k", io.BytesIO(b"v" * 100_000), etag=None, fence=token or "") is None
    assert sorted(p.name for p in (store.root / "objects").iterdir()) == []
