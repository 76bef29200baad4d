"""fsspec's own test suite for filesystems (fsspec.tests.abstract), run against csf://.

Wired the way fsspec wires it for its memory filesystem: one fixtures class, and one test
class per part of the suite.  Each test gets a new cached store: a tempfile local store in
front of a memory remote.  Directories exist only while a key lies under them (as on S3),
so the suite's empty-directory cases take the `supports_empty_directories = False` branch
s3fs takes.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec.tests.abstract as abstract
import pytest

from cached_stores_factory import CachedStore, MemoryStore
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory_fsspec import CachedStoreFileSystem


class CachedStoreFixtures(abstract.AbstractFixtures):  # type: ignore[misc]
    @pytest.fixture
    def fs(self, tmp_path: Path) -> Iterator[CachedStoreFileSystem]:
        store = CachedStore(TempfileStore("suite", root=tmp_path / "local"), MemoryStore())
        yield CachedStoreFileSystem(store=store)
        store.close()

    @pytest.fixture
    def fs_join(self) -> Callable[..., str]:
        return posixpath.join

    @pytest.fixture
    def fs_path(self) -> str:
        return ""

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return False


class TestCopy(abstract.AbstractCopyTests, CachedStoreFixtures):  # type: ignore[misc]
    pass


class TestGet(abstract.AbstractGetTests, CachedStoreFixtures):  # type: ignore[misc]
    # The one failure of the suite, fsspec's own: `get("src", existing_dir, recursive=True)`
    # of a top-level directory lands in existing_dir/, not existing_dir/src/, because
    # fsspec.utils.other_paths looks for the last "/" of the common prefix "src" and our keys
    # have no leading "/" (fsspec issue #1244, the same cause).  strict: it says when fsspec
    # fixes it.
    test_get_directory_recursive = pytest.mark.xfail(
        strict=True, reason="fsspec.utils.other_paths on keys without a leading '/'"
    )(abstract.AbstractGetTests.test_get_directory_recursive)


class TestPut(abstract.AbstractPutTests, CachedStoreFixtures):  # type: ignore[misc]
    pass


class TestPipe(abstract.AbstractPipeTests, CachedStoreFixtures):  # type: ignore[misc]
    pass


class TestOpen(abstract.AbstractOpenTests, CachedStoreFixtures):  # type: ignore[misc]
    pass
