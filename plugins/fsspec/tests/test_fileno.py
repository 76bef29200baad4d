"""File objects csf:// hands out for reading: exactly the object's bytes, whatever reads them.

A tempfile entry ends in a 20-byte checksum trailer: a reader through the descriptor
(numpy.fromfile, polars, mmap) would get 20 bytes too many, unchecked.  And DuckDB reads one
file object from many threads, each read a seek then a read.
"""

from __future__ import annotations

import io
import mmap
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from cached_stores_factory import CachedStore, MemoryStore
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory_fsspec import CachedStoreFileSystem

SIZES = {"small, read whole": 4096, "large, streamed and verified": 5_015_066}


@pytest.fixture
def fs(tmp_path: Path) -> CachedStoreFileSystem:
    store = CachedStore(TempfileStore("fileno", root=tmp_path / "local"), MemoryStore())
    return CachedStoreFileSystem(store=store)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_warm_hit_gives_no_descriptor_and_numpy_reads_the_exact_bytes(
    fs: CachedStoreFileSystem, size: int
) -> None:
    body = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    fs.pipe_file("data/x.bin", body)  # write-through: the next open is a warm hit
    with fs.open("data/x.bin", "rb") as handle:
        with pytest.raises(io.UnsupportedOperation):
            handle.fileno()
        with pytest.raises(io.UnsupportedOperation):
            os.read(handle.fileno(), size + 100)
        assert handle.read() == body
    with fs.open("data/x.bin", "rb") as handle:
        # numpy.fromfile wants a descriptor: refused, never the trailer's 20 bytes more.
        with pytest.raises(io.UnsupportedOperation):
            np.fromfile(handle, dtype=np.uint8)
        with pytest.raises(io.UnsupportedOperation):
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        assert np.frombuffer(handle.read(), dtype=np.uint8).tobytes() == body


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_a_seek_of_another_thread_never_moves_this_threads_read(
    fs: CachedStoreFileSystem, size: int
) -> None:
    body = bytes(range(256)) * (size // 256)
    fs.pipe_file("data/x.bin", body)
    sought, read = threading.Event(), threading.Event()
    found: list[bytes] = []

    def other_thread() -> None:  # seeks and reads between this thread's seek and read
        sought.wait(10)
        handle.seek(1000)
        found.append(handle.read(10))
        read.set()

    with fs.open("data/x.bin", "rb") as handle:
        thread = threading.Thread(target=other_thread)
        thread.start()
        handle.seek(7)
        sought.set()
        read.wait(10)
        assert handle.read(10) == body[7:17]  # from this thread's own position
        thread.join(10)
        assert found == [body[1000:1010]]
        assert handle.tell() == 17
        handle.seek(-5, os.SEEK_END)
        assert handle.read() == body[-5:] and handle.read() == b""


class SeekCounting(io.BytesIO):
    seeks = 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.seeks += 1
        return super().seek(offset, whence)


def test_reading_on_never_seeks_the_stream_below() -> None:
    """A seek of a large tempfile entry checks the whole entry once: a read that runs on
    from where the stream is must not cause one."""
    from cached_stores_factory_fsspec._files import SharedReader

    below = SeekCounting(bytes(range(256)) * 100)
    reader = SharedReader(below, 25_600, "k", lambda: None)
    assert reader.read(100) + reader.read(100) + reader.readline() == below.getvalue()[:267]
    assert below.seeks == 0
    reader.seek(1000)
    assert reader.read(4) == below.getvalue()[1000:1004] and below.seeks == 1
