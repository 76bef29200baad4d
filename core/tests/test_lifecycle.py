"""The write-handle lifecycle: what commits, what is discarded, and who may commit."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import IO

import pytest

from cached_stores_factory import CachedStore, CachedStoreFactory, EntryStat, MemoryStore


class CountingRemote(MemoryStore):
    """A memory store that counts uploads."""

    def __init__(self) -> None:
        super().__init__()
        self.uploads: Counter[str] = Counter()

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self.uploads[key] += 1
        return super().put_stream(key, stream, etag=etag)


@pytest.fixture
def remote() -> CountingRemote:
    store = CountingRemote()
    store.put("k", b"the good remote copy")
    return store


@pytest.fixture
def cs(remote: CountingRemote) -> CachedStore:
    cached = CachedStoreFactory(MemoryStore(), remote).build()
    assert cached.get("k") == b"the good remote copy"  # a local copy too
    return cached


class Boom(Exception):
    pass


@pytest.mark.parametrize("mode", ["wb", "r+b", "ab", "w", "r+", "a"])
def test_an_exception_inside_with_discards_the_changes(cs, remote, mode: str) -> None:
    data = b"half a fi" if "b" in mode else "half a fi"
    error = Boom("midway")
    with pytest.raises(Boom) as raised, cs.open("k", mode) as handle:
        handle.write(data)
        raise error
    assert raised.value is error  # re-raised unchanged
    assert handle.closed
    assert remote.uploads["k"] == 0
    assert remote.get("k") == b"the good remote copy"
    assert cs.local.get("k") == b"the good remote copy"


@pytest.mark.parametrize("mode", ["wb", "w"])
def test_discard_throws_the_changes_away(cs, remote, mode: str) -> None:
    handle = cs.open("k", mode)
    handle.write(b"never" if "b" in mode else "never")
    handle.discard()  # type: ignore[attr-defined]
    assert handle.closed
    handle.close()  # closing a discarded handle commits nothing either
    del handle
    gc.collect()
    assert remote.uploads["k"] == 0
    assert remote.get("k") == b"the good remote copy"


def test_text_tell_and_seek_upload_nothing_until_close(cs, remote) -> None:
    handle = cs.open("k", "w+")
    for part in ("one", "two", "six"):
        handle.write(part)
        handle.tell()
    handle.seek(0, io.SEEK_END)
    handle.flush()
    assert remote.uploads["k"] == 0
    handle.seek(0)
    assert handle.read() == "onetwosix"  # flushed bytes stay visible to the handle itself
    handle.close()
    assert remote.uploads["k"] == 1
    assert remote.get("k") == b"onetwosix"


def test_binary_flush_uploads_nothing(cs, remote) -> None:
    with cs.open("k", "r+b") as handle:
        handle.write(b"THE")
        handle.flush()
        assert remote.uploads["k"] == 0
        assert handle.read(5) == b" good"
    assert remote.uploads["k"] == 1
    assert remote.get("k") == b"THE good remote copy"


# -- process boundaries ------------------------------------------------------------------

# A remote that outlives the processes: one file per key under DIR, written whole.
_DIR_REMOTE = """
import io, os
from cached_stores_factory import CachedStoreFactory, MemoryStore

class DirStore(MemoryStore):
    def put_stream(self, key, stream, *, etag=None):
        data = stream.read()
        with open(os.path.join(DIR, key), "ab") as log:
            log.write(b"|" + data)  # every commit, in order
        return super().put_stream(key, io.BytesIO(data), etag=etag)
"""


def run_script(tmp_path: Path, body: str) -> None:
    script = f"DIR = {str(tmp_path)!r}\n" + _DIR_REMOTE + textwrap.dedent(body)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_a_forked_child_never_commits_its_parents_handle(tmp_path: Path) -> None:
    run_script(
        tmp_path,
        """
        import gc
        CS = CachedStoreFactory(MemoryStore(), DirStore()).build()
        handle = CS.open("k", "wb")
        handle.write(b"old")
        pid = os.fork()
        if pid == 0:
            # The child drops its copy of the handle, then exits the normal way: its
            # garbage collection and exit hooks run, and must commit nothing.
            del handle
            gc.collect()
            raise SystemExit(0)
        handle.write(b"+new")
        handle.close()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        """,
    )
    assert (tmp_path / "k").read_bytes() == b"|old+new"


def test_a_fork_with_the_handle_kept_open_in_the_child_commits_once(tmp_path: Path) -> None:
    run_script(
        tmp_path,
        """
        CS = CachedStoreFactory(MemoryStore(), DirStore()).build()
        handle = CS.open("k", "wb")
        handle.write(b"old")
        pid = os.fork()
        if pid != 0:
            os.waitpid(pid, 0)  # the child exits first, holding its copy until exit
            handle.write(b"+new")
            handle.close()
        """,
    )
    assert (tmp_path / "k").read_bytes() == b"|old+new"


def test_exit_commits_after_a_worker_thread_finishes_writing(tmp_path: Path) -> None:
    run_script(
        tmp_path,
        """
        import threading, time
        CS = CachedStoreFactory(MemoryStore(), DirStore()).build()

        def worker():
            handle = CS.open("k", "wb")  # never closed: committed at exit
            for byte in b"0123456789":
                handle.write(bytes([byte]))
                time.sleep(0.02)
            global kept
            kept = handle

        threading.Thread(target=worker).start()
        """,
    )
    assert (tmp_path / "k").read_bytes() == b"|0123456789"


def test_handles_never_closed_commit_at_interpreter_exit(tmp_path: Path) -> None:
    """The seed's examples never close their handles: the remote must hold the bytes anyway."""
    run_script(
        tmp_path,
        """
        CS = CachedStoreFactory(MemoryStore(), DirStore()).build()
        kept = CS.open("kept", "wb")          # referenced by a global until the end
        kept.write(b"written, never closed")
        text = CS.open("text", "w")
        text.write("text, never closed")
        def scoped():
            handle = CS.open("scoped", "wb")  # dropped when the function returns
            handle.write(b"collected")
        scoped()
        """,
    )
    assert (tmp_path / "kept").read_bytes() == b"|written, never closed"
    assert (tmp_path / "text").read_bytes() == b"|text, never closed"
    assert (tmp_path / "scoped").read_bytes() == b"|collected"
