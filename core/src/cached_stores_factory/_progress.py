"""Progress bars for the `csf` command: tqdm on stderr, imported only when a bar is drawn.

tqdm over rich: it is the cheaper import (docs/performance.md has the figures), and it counts
bytes through a plain `update(n)`, which is all a stream wrapper needs.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from ._store import EntryReader, EntryStat, Store

__all__ = ["LARGE", "Meter", "MeteredStore"]

LARGE = 1024 * 1024
"""Transfers of this many bytes or more get a bar; smaller ones finish before one would help."""

Update = Callable[[int], object]


class Meter:
    """Whether and how to draw bars: `enabled` when stderr is a terminal or `--progress`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def bar(
        self, description: str, total: int | None, unit: str = "B", *, at_least: int = LARGE
    ) -> Iterator[Update]:
        """A bar for `total` units (None: unknown), as a function to call with each advance.

        Nothing is drawn when disabled or for a known total under `at_least`: a small
        transfer finishes before a bar would help.  Byte bars stay on screen when done.
        """
        if not self.enabled or (total is not None and total < at_least):
            yield _ignore
            return
        from tqdm import tqdm

        with tqdm(
            total=total,
            desc=description,
            unit=unit,
            unit_scale=unit == "B",
            unit_divisor=1024,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=unit == "B",
        ) as progress:
            yield progress.update


def _ignore(count: int) -> None:
    """The update function of a bar that is not drawn."""


class _Counted(io.RawIOBase):
    """A readable stream that reports each byte read through it once.

    Progress is the furthest position reached: a reader that seeks back and reads again (the
    S3 store reads the first part to choose between one PUT and a multipart upload, then
    rewinds) moves no bar.  `done`, when given, runs at close, which then closes the wrapped
    stream too; without it the wrapped stream stays open for its owner.
    """

    def __init__(
        self, stream: IO[bytes], update: Update, done: Callable[[], object] | None = None
    ) -> None:
        super().__init__()
        self._stream = stream
        self._update = update
        self._done = done
        # Positions are counted from where the stream stood when wrapped.
        self._start = stream.tell() if stream.seekable() else 0
        self._position = self._furthest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        self._position += len(data)
        if self._position > self._furthest:
            self._update(self._position - self._furthest)
            self._furthest = self._position
        return len(data)

    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        where = self._stream.seek(offset, whence)
        self._position = where - self._start
        return where

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        if not self.closed and self._done is not None:
            self._stream.close()
            self._done()
        super().close()


class MeteredStore(Store):
    """A store that draws a bar for each large transfer: the remote, as `csf` sees it.

    Everything else goes straight to the wrapped store, conditional reads included.
    """

    def __init__(self, inner: Store, meter: Meter) -> None:
        self.inner = inner
        self.meter = meter

    def __repr__(self) -> str:
        return repr(self.inner)

    @property
    def native_expiry(self) -> float | None:  # type: ignore[override]
        return self.inner.native_expiry

    def _download(self, key: str, entry: EntryReader) -> EntryReader:
        bar = contextlib.ExitStack()  # the bar ends when the entry's stream is closed
        update = bar.enter_context(self.meter.bar(key, entry.stat.size))
        counted = _Counted(entry.stream, update, bar.close)
        return EntryReader(io.BufferedReader(counted), entry.stat)

    def open_read(self, key: str) -> EntryReader:
        return self._download(key, self.inner.open_read(key))

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        entry = self.inner.open_read_if_changed(key, etag)
        return None if entry is None else self._download(key, entry)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        size = _remaining(stream)
        with self.meter.bar(key, size) as update:
            counted = io.BufferedReader(_Counted(stream, update))
            return self.inner.put_stream(key, counted, etag=etag)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as entry:
            return entry.read()

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def delete(self, key: str) -> bool:
        return self.inner.delete(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        return self.inner.keys(prefix)

    def stat(self, key: str) -> EntryStat:
        return self.inner.stat(key)

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def close(self) -> None:
        self.inner.close()


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left in a seekable stream, or None when it cannot tell (a pipe)."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, io.SEEK_END)
        stream.seek(here)
    except OSError:
        return None
    return end - here
