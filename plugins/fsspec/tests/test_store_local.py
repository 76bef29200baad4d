"""FsspecStore over memory:// and file://: the conformance suite, versions, pinned reads."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cached_stores_factory import Store
from cached_stores_factory.errors import (
    ConfigError,
    EntryChangedError,
    KeyNotFoundError,
    RemoteError,
    StoreError,
)
from cached_stores_factory.plugins import registry
from cached_stores_factory.testing.stores import StoreConformance
from cached_stores_factory_fsspec import FsspecStore
from cached_stores_factory_fsspec import _store as store_module


class FileSystemConformance(StoreConformance):
    """The suite, for file systems: a path there is a file or a folder, never both."""

    @pytest.mark.parametrize("order", ["file first", "folder first"])
    def test_a_key_may_also_be_the_prefix_of_another(self, store: Store, order: str) -> None:
        """The second of "a" and "a/b" is refused, saying why; the first stays readable."""
        writes = [("a", b"the file"), ("a/b", b"under it")]
        (first, data), (second, more) = writes if order == "file first" else writes[::-1]
        store.put(first, data)
        with pytest.raises(StoreError, match="a key can't also begin another key here"):
            store.put(second, more)
        assert store.get(first) == data
        assert sorted(store.keys()) == [first]


class TestMemoryConformance(FileSystemConformance):
    @pytest.fixture
    def store(self) -> Iterator[FsspecStore]:
        with FsspecStore(f"memory://csf-{uuid.uuid4().hex}") as store:
            yield store


class TestFileConformance(FileSystemConformance):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[FsspecStore]:
        with FsspecStore(f"file://{tmp_path}/root") as store:
            yield store


def test_registered_under_fsspec_by_its_distribution() -> None:
    component = registry.get("store", "fsspec")
    assert component.factory is FsspecStore
    assert component.distribution == "cached-stores-factory-fsspec"


def test_loading_the_plugin_imports_no_filesystem() -> None:
    code = (
        "import sys, cached_stores_factory_fsspec; "
        "assert not {'fsspec', 'gcsfs', 'adlfs', 'aiohttp'} & set(sys.modules), sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_memory_store_imports_no_remote_implementation() -> None:
    code = (
        "import sys; from cached_stores_factory_fsspec import FsspecStore; "
        "FsspecStore('memory://x').put('k', b'v'); "
        "assert not {'gcsfs', 'adlfs', 'aiohttp', 'azure'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_url_without_a_protocol_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'url' must be a URL"):
        FsspecStore("/just/a/path")


def test_an_unknown_protocol_is_a_config_error_naming_the_url() -> None:
    with pytest.raises(ConfigError, match=r"nosuch://bucket"):
        FsspecStore("nosuch://bucket/prefix")


def test_a_missing_implementation_names_the_pip_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if gcsfs were not installed
    monkeypatch.setitem(sys.modules, "gcsfs.core", None)
    with pytest.raises(ConfigError, match=r"gs://bucket/p: .*cached-stores-factory\[gcs\]"):
        FsspecStore("gs://bucket/p")


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_a_write_whose_source_breaks_leaves_the_old_object(
    kind: str, tmp_path: Path, breaking_stream: type[Any]
) -> None:
    url = f"memory://broken-{uuid.uuid4().hex}" if kind == "memory" else f"file://{tmp_path}"
    store = FsspecStore(url)
    store.put("k", b"old")
    with pytest.raises(RemoteError, match="the source broke"):
        store.put_stream("k", breaking_stream(6 << 20, 5 << 20))
    assert store.get("k") == b"old"
    assert list(store.keys()) == ["k"]
    if kind == "file":
        assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temp file left


def test_a_memory_object_being_written_is_not_visible_half_written(
    breaking_stream: type[Any],
) -> None:
    store = FsspecStore(f"memory://half-{uuid.uuid4().hex}")
    seen: list[int] = []

    class Watching(breaking_stream):  # type: ignore[misc, valid-type]
        def readinto(self, buffer: Any) -> int:
            with contextlib.suppress(KeyNotFoundError):
                seen.append(store.stat("k").size)
            return super().readinto(buffer)

    store.put_stream("k", Watching(6 << 20, 7 << 20))
    assert set(seen) <= {0} or seen == []  # absent (or empty) until the write completes
    assert store.stat("k").size == 6 << 20


def test_a_change_between_chunks_is_refused_never_spliced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CHUNK", 1024)
    store = FsspecStore(f"file://{tmp_path}")
    store.put("big", b"a" * 4096)
    with store.open_read("big") as entry:
        assert entry.read(1024) == b"a" * 1024
        store.put("big", b"b" * 4096)
        with pytest.raises(RemoteError, match="changed while it was read"):
            entry.read()


def test_a_range_pinned_to_an_old_version_raises_entry_changed(tmp_path: Path) -> None:
    store = FsspecStore(f"file://{tmp_path}")
    store.put("obj", b"0123456789")
    with store.open_range("obj", 2, 5) as entry:
        assert entry.read() == b"234"
        old = entry.stat.etag
    assert old is not None
    store.put("obj", b"abcdefghijk")
    with pytest.raises(EntryChangedError):
        store.open_range("obj", 2, 5, if_match=old)
    with store.open_range("obj", 2, 5) as entry:
        assert entry.read() == b"cde"


def test_revalidation_of_an_unchanged_file_returns_none(tmp_path: Path) -> None:
    store = FsspecStore(f"file://{tmp_path}")
    stat = store.put_stream("obj", io.BytesIO(b"payload"))
    assert stat.etag is not None
    assert store.open_read_if_changed("obj", stat.etag) is None
    store.put("obj", b"changed")
    entry = store.open_read_if_changed("obj", stat.etag)
    assert entry is not None
    assert entry.read() == b"changed"
