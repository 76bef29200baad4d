"""FsspecStore: any fsspec location (gs://, az://, https://, file://, memory://, ...) as a store.

`url` names the location; every other argument is the filesystem's storage options, passed
as they are (credentials among them, so they are never shown).  The implementation (gcsfs,
adlfs, aiohttp) is imported when the store is built, never when the plugin loads.

Reads go through the backend's reader (see `_backends`): an object is read in chunks, each
pinned to the version the first one found, so two versions are never spliced; a read from
the start is checked against the backend's checksum (sha-256, MD5 or CRC32C) when it
reports one.
Revalidation asks for the body only if the version changed.  Writes are atomic where the
backend's are (object stores publish an object whole; a local file is written beside its
place and renamed); an HTTP location is read-only and refuses writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import time
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any

from cached_stores_factory import BytesReader, EntryReader, EntryStat, Store, validate_key
from cached_stores_factory._store import seek_target
from cached_stores_factory.errors import (
    ConfigError,
    EntryChangedError,
    InvalidKeyError,
    KeyNotFoundError,
    RemoteError,
    StoreError,
    redact,
)

from ._backends import (
    TEMP_PREFIX,
    Backend,
    Changed,
    NotFound,
    Reply,
    Version,
    backend_for,
    quote_http,
)

__all__ = ["FsspecStore"]

CHUNK = 4 * 1024 * 1024
"""Bytes per read request: a stream holds one chunk at a time."""

_REOPENS = 3  # an open that met a change between its requests starts again this many times
_EXTRAS = {"gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
_EXTRAS |= {"http": "http", "https": "http"}


class _Chunks(io.RawIOBase):
    """The rest of an object after its first chunk, each chunk pinned to the first's version.

    Reading the whole object, it checks the bytes against the version's checksum at the end.
    """

    def __init__(self, store: FsspecStore, key: str, first: Reply, start: int, end: int) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._version = first.version
        self._buffer = memoryview(first.body)
        self._position = start + len(first.body)  # the next offset to fetch
        self._end = min(end, first.version.size)
        self._checksum = (
            _Checksum(first.version) if start == 0 and end >= first.version.size else None
        )
        if self._checksum is not None:
            self._checksum.update(first.body)
        self._checked = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position - len(self._buffer)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move as a file does; the next read fetches from there, still pinned to the version.

        Bytes read after a seek elsewhere are checked by that pin, not by the whole-object
        checksum (which needs every byte in order).
        """
        here = self.tell()
        target = seek_target(offset, whence, here, self._version.size)
        if target != here:
            self._buffer = memoryview(b"")
            self._position = target
            self._checksum = None
        return target

    def readinto(self, buffer: Any) -> int:
        if not self._buffer and self._position < self._end:
            self._buffer = memoryview(self._next_chunk())
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        if count == 0 and not self._checked:
            self._checked = True
            if self._checksum is not None:
                self._checksum.verify(self._store._where(self._key))
        return count

    def _next_chunk(self) -> bytes:
        end = min(self._end, self._position + CHUNK)
        with self._store._calling(self._key):
            try:
                reply = self._store._backend.fetch(
                    self._store._path(self._key), self._position, end, pin=self._version.tag
                )
            except Changed as changed:
                raise RemoteError(
                    f"{self._store._where(self._key)}: the object changed while it was read "
                    f"(version {self._version.tag}, now {changed.found or 'another'}); "
                    "open it again to read the new version"
                ) from None
        assert reply is not None  # no `unless`: a reply always comes
        if not reply.body:
            raise RemoteError(
                f"{self._store._where(self._key)}: the object ended at {self._position} "
                f"of {self._version.size} bytes"
            )
        if self._checksum is not None:
            self._checksum.update(reply.body)
        self._position += len(reply.body)
        return reply.body


def _read_up_to(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`: fewer only at its end (a raw stream's read may
    return less)."""
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := stream.read(left)):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class _Checksum:
    """The backend's own checksum of a whole object, computed again over what was read."""

    def __init__(self, version: Version) -> None:
        self._expected = version.sha256 or version.md5 or version.crc32c
        self._size = version.size
        self._read = 0
        self._hash: Any = None
        if version.sha256:
            self._hash = hashlib.sha256()
        elif version.md5:
            self._hash = hashlib.md5(usedforsecurity=False)
        elif version.crc32c:
            with contextlib.suppress(ImportError):  # gcsfs brings google-crc32c
                import google_crc32c

                self._hash = google_crc32c.Checksum()  # type: ignore[no-untyped-call]

    def update(self, data: bytes) -> None:
        self._read += len(data)
        if self._hash is not None:
            self._hash.update(data)

    def verify(self, where: str) -> None:
        if self._read != self._size:
            raise RemoteError(f"{where}: read {self._read} of {self._size} bytes")
        if self._hash is not None and self._hash.digest() != self._expected:
            raise RemoteError(f"{where}: the bytes read do not match the backend's checksum")


_SECRET_NAMES = re.compile(r"password|secret|token|key|auth|credential|sas|connection|cookie", re.I)
# Connection strings (Azure's) carry their secrets as `name=value;` pairs.
_SECRET_PAIRS = re.compile(r"(?:AccountKey|SharedAccessSignature|SharedAccessKey)=([^;]+)", re.I)


def _secret_values(options: Any, secret: bool = False) -> Iterator[str]:
    """The values of the storage options (nested ones too) whose names look secret, and the
    keys inside a connection string: what errors must never show."""
    if isinstance(options, dict):
        for name, value in options.items():
            yield from _secret_values(value, secret or bool(_SECRET_NAMES.search(str(name))))
    elif secret and isinstance(options, str) and options:
        yield options
        yield from _SECRET_PAIRS.findall(options)


def _filesystem(url: str, protocol: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The filesystem for `url` and the path it names.

    gs:// gets gcsfs's core filesystem: the experimental one gcsfs registers by default asks
    a gRPC control API for each bucket's layout first, which GCS emulators don't answer.
    """
    if protocol in ("gs", "gcs"):
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(**options), GCSFileSystem._strip_protocol(url)
    import fsspec.core

    fs, root = fsspec.core.url_to_fs(url, **options)
    return fs, root


class FsspecStore(Store):
    """The objects under `url`, an fsspec URL; `storage_options` configure its filesystem.

    `url = "gs://bucket/prefix"` with gcsfs's options (`project`, `token`, `endpoint_url`),
    `"az://container/prefix"` with adlfs's (`account_name`, `account_key`,
    `connection_string`), `"https://host/path"` with fsspec's HTTP options (`headers`,
    `client_kwargs`), `"file:///srv/data"`, `"memory://name"`, or any other protocol fsspec
    knows.

    Args:
        url: Where the objects are: a protocol, then the bucket, container or path, and an
            optional prefix.  A password in it is never shown.
        **storage_options: The filesystem's own options; secret-named ones are never shown.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(
                "FsspecStore argument 'url' must be a URL such as 'gs://bucket/prefix', "
                f"not {url!r}"
            )
        self._secrets = [*_secret_values(storage_options), urllib.parse.urlsplit(url).password]
        self.url = redact(url.rstrip("/"), self._secrets)  # a password in the URL: never shown
        self.protocol = url.partition("://")[0]
        options = {"skip_instance_cache": True, **storage_options}
        if self.protocol in ("file", "local"):
            options.setdefault("auto_mkdir", True)
        try:
            fs, root = _filesystem(url, self.protocol, options)
        except ImportError as exc:
            extra = _EXTRAS.get(self.protocol, "fsspec")
            raise ConfigError(
                f"FsspecStore for {self.url}: {self._clean(exc)} "
                f'(pip install "cached-stores-factory[{extra}]")'
            ) from None
        except ValueError as exc:
            raise ConfigError(f"FsspecStore for {self.url}: {self._clean(exc)}") from None
        except Exception as exc:
            raise RemoteError(f"FsspecStore for {self.url}: {self._clean(exc)}") from None
        self._fs = fs
        self._root = root.rstrip("/")
        self._backend: Backend = backend_for(fs)

    def __repr__(self) -> str:
        return f"FsspecStore(url={self.url!r})"

    # -- plumbing ---------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        if not self._backend.writable:  # http(s): the key is part of a URL
            return f"{self._root}/{quote_http(key)}"
        return f"{self._root}/{key}"

    def _where(self, key: str = "") -> str:
        return f"{self.url}/{key}" if key else self.url

    def _clean(self, exc: BaseException) -> str:
        """The error's message on one line, without the storage options' secret values."""
        text = str(exc) or type(exc).__name__
        return " ".join(line.strip() for line in redact(text, self._secrets).splitlines())

    @contextlib.contextmanager
    def _calling(self, key: str = "") -> Iterator[None]:
        """A missing object as KeyNotFoundError, any other failure as RemoteError."""
        try:
            yield
        except (NotFound, FileNotFoundError):
            raise KeyNotFoundError(key, self.url) from None
        except (StoreError, Changed):
            raise
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise StoreError(
                f"{self._where(key)}: {type(exc).__name__}: a file system holds a path as a "
                "file or a folder, not both, so a key can't also begin another key here "
                "(use an object store, or the tempfile store for a local disk)"
            ) from None
        except Exception as exc:
            raise RemoteError(f"{self._where(key)}: {self._clean(exc)}") from None

    @staticmethod
    def _stat(version: Version) -> EntryStat:
        return EntryStat(
            size=version.size, modified=version.modified, etag=version.origin_tag or version.tag
        )

    # -- reading ----------------------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """One ranged read of the first chunk (after a metadata request on a backend without
        conditional reads: see `_backends`), then one per further chunk, each pinned to the
        first's version."""
        entry = self._open(key, None)
        assert entry is not None
        return entry

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        """None, with no body bytes moved, while the object is still version `etag`."""
        return self._open(key, etag)

    def _open(self, key: str, unless: str | None) -> EntryReader | None:
        path = self._path(key)
        for _ in range(_REOPENS):
            with self._calling(key):
                try:
                    first = self._first_chunk(path, unless)
                except Changed:
                    # Changed between two requests of this open, so no longer `unless`:
                    # open it again with one unconditional read.
                    unless = None
                    continue
            if first is None:
                return None
            stream = io.BufferedReader(_Chunks(self, key, first, 0, first.version.size), CHUNK)
            return EntryReader(stream, self._stat(first.version))
        raise RemoteError(f"{self._where(key)}: the object kept changing while it was opened")

    def _first_chunk(self, path: str, unless: str | None) -> Reply | None:
        """The first chunk and its version; None if the version is still `unless`."""
        if unless is None or self._backend.conditional:
            return self._backend.fetch(path, 0, CHUNK, unless=unless)
        current = self._backend.version(path)  # no body bytes yet
        if unless is not None and unless in (current.tag, current.origin_tag):
            return None
        if current.size == 0:
            return Reply(b"", current)
        first = self._backend.fetch(path, 0, min(CHUNK, current.size), pin=current.tag)
        assert first is not None  # no `unless`: a reply always comes
        return Reply(first.body, current)  # the metadata's version: checksums, origin tag

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        """One read of [start, end) pinned to `if_match` (EntryChangedError if it is gone);
        the stat's etag is the backend's own version, the one `if_match` compares."""
        if not 0 <= start <= end:
            raise ValueError(f"a range needs 0 <= start <= end, not [{start}, {end})")
        path = self._path(key)
        with self._calling(key):
            try:
                first = self._backend.fetch(path, start, min(end, start + CHUNK), pin=if_match)
            except Changed as changed:
                if if_match is None:
                    raise RemoteError(f"{self._where(key)}: the object changed mid-read") from None
                raise EntryChangedError(key, if_match, changed.found) from None
        assert first is not None
        version = first.version
        stat = EntryStat(size=version.size, modified=version.modified, etag=version.tag)
        if end - start <= CHUNK or len(first.body) < CHUNK:
            return EntryReader(BytesReader(first.body[: end - start]), stat)
        stream = io.BufferedReader(_Chunks(self, key, first, start, end), CHUNK)
        return EntryReader(stream, stat)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as entry:
            return entry.read()

    def stat(self, key: str) -> EntryStat:
        """One metadata request (a HEAD, an object's properties, an `info()`)."""
        with self._calling(key):
            return self._stat(self._backend.version(self._path(key)))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every valid key under the prefix; directory markers and odd names are skipped.

        A web server is listed from its root's index page (the links it finds there and in
        the pages of the folders they name), whatever the prefix.
        """
        folder = prefix.rpartition("/")[0] if self._backend.writable else ""
        base = f"{self._root}/{folder}" if folder else self._root
        with self._calling():
            self._fs.invalidate_cache()
            try:
                found = self._fs.find(base)
                if folder and [str(path) for path in found] == [base]:
                    # An object named as the folder hides the folder (adlfs): list the root.
                    found = self._fs.find(self._root)
            except FileNotFoundError:
                found = []
        for path in found:
            name = str(path).removeprefix(self._root + "/")
            if not self._backend.writable:
                name = urllib.parse.unquote(name)
            if not name.startswith(prefix) or name.rpartition("/")[2].startswith(TEMP_PREFIX):
                continue
            try:
                yield validate_key(name)
            except InvalidKeyError:
                continue

    # -- writing ----------------------------------------------------------------------------

    def _refuse_writes(self, key: str) -> None:
        if not self._backend.writable:
            raise StoreError(
                f"{self._where(key)}: an {self.protocol} location is read-only "
                "(use it as a remote store only)"
            )

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Copy `stream` in chunks; the object appears whole when the write completes.

        `etag`, the origin's tag when this store caches another, is kept in the object's
        metadata where the backend has metadata (GCS, Azure) and reported by `stat`.
        """
        self._refuse_writes(key)
        path = self._path(key)
        head = _read_up_to(stream, CHUNK)
        with self._calling(key):
            if self.protocol in ("memory", "file", "local") and self._fs.isdir(path):
                try:  # an empty folder, left by deleted keys, goes
                    self._fs.rmdir(path)
                except OSError:  # a folder of other keys (memory:// would take both)
                    raise IsADirectoryError(path) from None
            self._backend.write(path, head, stream if len(head) == CHUNK else None, etag)
            version = self._backend.version(path)
        stat = self._stat(version)
        return stat if stat.modified is not None else stat._replace(modified=time.time())

    def delete(self, key: str) -> bool:
        """An existence check, then the delete (object stores answer both cases alike)."""
        self._refuse_writes(key)
        path = self._path(key)
        with self._calling(key):
            try:
                self._backend.version(path)
            except NotFound:
                return False
            try:
                self._backend.remove(path)
            except FileNotFoundError:
                return False
        return True

    def close(self) -> None:
        """Nothing to release: the filesystem's sessions close with it."""
