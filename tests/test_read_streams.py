"""`open(key, "rb")` seeks as a regular file does, whatever the entry's size and its source.

A temp-file cache serves entries up to 2 MiB as a `BytesReader` and larger ones as a
streaming, verifying file; an object the policy refuses is served from a spool, in memory up
to 4 MiB and from an unlinked file beyond.  Each of them is driven with the same drawn
seeks, reads and tells as an `io.BytesIO` of the same bytes (see `assert_reads_like_a_file`).
"""

from __future__ import annotations

import errno
import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cached_stores_factory import CachedStore, CachedStoreFactory, CachePolicy, MemoryStore
from cached_stores_factory.testing.stores import assert_reads_like_a_file
from cached_stores_factory_tempfile import TempfileStore

MiB = 1024 * 1024
# Around the temp-file store's thresholds (64 KiB, 2 MiB) and the spool's (4 MiB).
SIZES = [0, 17, 70 * 1024, 2 * MiB, 2 * MiB + 1, 4 * MiB + 3]


class KeepsNothing(CachePolicy):
    """Admits nothing, so every read is served from the fetch's spool."""

    def admits(self, size: int | None) -> bool:
        return False


def content(size: int) -> bytes:
    return random.Random(size).randbytes(size)


@pytest.fixture(scope="module", params=["kept", "spooled"])
def cached(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CachedStore]:
    root: Path = tmp_path_factory.mktemp("rb")
    remote = MemoryStore()
    for size in SIZES:
        remote.put(f"entry/{size}", content(size))
    policy = KeepsNothing() if request.param == "spooled" else None
    with CachedStoreFactory(TempfileStore("rb", root=str(root)), remote, policy).build() as store:
        yield store


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_rb_streams_seek_read_and_tell_as_a_file(cached: CachedStore, data: st.DataObject) -> None:
    size = data.draw(st.sampled_from(SIZES), label="size")
    with cached.open(f"entry/{size}", "rb") as stream:
        assert_reads_like_a_file(stream, content(size), data)


@pytest.mark.parametrize("size", [17, 2 * MiB + 1])
def test_a_seek_before_the_start_raises_and_one_past_the_end_stays(
    cached: CachedStore, size: int
) -> None:
    """The issue's case: below 2 MiB seek(-1) raised, above it returned 0 and clamped."""
    with cached.open(f"entry/{size}", "rb") as stream:
        assert stream.read(5) == content(size)[:5]
        with pytest.raises(OSError) as refused:
            stream.seek(-1)
        assert refused.value.errno == errno.EINVAL
        assert stream.tell() == 5
        assert stream.seek(size + 10) == size + 10
        assert stream.tell() == size + 10
        assert stream.read() == b""
        assert stream.seek(-3, io.SEEK_END) == size - 3
        assert stream.read() == content(size)[-3:]
