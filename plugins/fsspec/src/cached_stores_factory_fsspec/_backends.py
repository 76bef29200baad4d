"""How FsspecStore reads one backend: a version for each object, and reads pinned to one.

fsspec's own API has no conditional reads, so each backend that has them gets a small reader
of its own here (HTTP's headers, GCS's generations, Azure's ETags), built on the client the
filesystem already holds.  Any other filesystem is read through fsspec and checked against
its `info()` before and after.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import itertools
import logging
import shutil
import urllib.parse
import uuid
from typing import IO, Any, NamedTuple

__all__ = [
    "TEMP_PREFIX",
    "Backend",
    "Changed",
    "NotFound",
    "Reply",
    "Version",
    "backend_for",
    "quote_http",
]

_NOT_MODIFIED = 304
_PRECONDITION_FAILED = 412
_NO_RANGE = 416


class Version(NamedTuple):
    """One version of an object: what a read is pinned to and checked against."""

    tag: str | None  # GCS generation, an ETag, "last-modified:<date>", or a local file's
    size: int
    modified: float | None
    md5: bytes | None = None  # the whole object's checksums, as the backend reports them
    crc32c: bytes | None = None
    sha256: bytes | None = None
    origin_tag: str | None = None  # the origin's tag this object was cached under, if kept


class Reply(NamedTuple):
    body: bytes
    version: Version


class _RangeRefusalFilter(logging.Filter):
    """gcsfs logs every refused request as an error with a traceback.  A range at or past the
    end of an object (HTTP 416: the first chunk of an empty object) is an answer the store
    expects, not an error: that one record is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return getattr(error, "code", None) != _NO_RANGE


_EXPECTED_RANGE_REFUSAL = _RangeRefusalFilter()


class Changed(Exception):
    """The object is no longer the pinned version (`found`, if known, is the new tag)."""

    def __init__(self, found: str | None = None) -> None:
        super().__init__(found)
        self.found = found


class _PastTheEnd(Exception):
    """A range that starts at or past the end of the object."""


class NotFound(Exception):
    """The object does not exist."""


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    try:
        return email.utils.parsedate_to_datetime(str(value)).timestamp()
    except (TypeError, ValueError):
        return None


def _b64(value: Any) -> bytes | None:
    if not value:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    try:
        return base64.b64decode(str(value))
    except ValueError:
        return None


def _repr_digests(header: str) -> dict[str, bytes]:
    """RFC 9530's `Repr-Digest: sha-256=:<base64>:, ...`: the whole object's digests, which a
    ranged response carries too."""
    found = {}
    for item in header.split(","):
        algorithm, _, value = item.strip().partition("=")
        digest = _b64(value.strip(":"))
        if digest:
            found[algorithm.lower()] = digest
    return found


def _size_of(headers: Any, body: bytes) -> int:
    """The whole object's size from a (ranged) response's headers."""
    total = str(headers.get("Content-Range", "")).rpartition("/")[2]
    return int(total) if total.isdigit() else len(body)


class Backend:
    """Any fsspec filesystem: `info()` gives the version, `cat_file` the bytes.

    A read is checked against `info()` after it (and before, unless pinned), so a change in
    between raises Changed instead of returning a mix.  There is no conditional read: the
    store asks for the version first, so revalidating an unchanged object moves no body.
    """

    conditional = False  # True: fetch(unless=...) costs one request and no body when unchanged
    writable = True

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def version(self, path: str) -> Version:
        self.fs.invalidate_cache(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise NotFound from None
        if info.get("type") == "directory" or info.get("size") is None:
            raise NotFound
        return self._version(info)

    def _version(self, info: dict[str, Any]) -> Version:
        modified = _timestamp(info.get("mtime") or info.get("created"))
        size = int(info["size"])
        identity = info.get("ino") or info.get("name")
        tag = f"{modified!r}-{size}-{identity}" if modified is not None else None
        return Version(tag, size, modified)

    def fetch(
        self, path: str, start: int, end: int, *, pin: str | None = None, unless: str | None = None
    ) -> Reply | None:
        """Bytes [start, end) (fewer past the end) and the version they belong to.

        `pin`: raise Changed unless the object is still that version.  `unless` (backends
        with conditional reads only): return None, with no body, if it is still that version.
        """
        before = self.version(path) if pin is None else None
        try:
            body = self.fs.cat_file(path, start, end)
        except FileNotFoundError:
            raise Changed(None) if pin is not None else NotFound from None
        after = self.version(path)
        expected = pin if before is None else before.tag
        if after.tag != expected:
            raise Changed(after.tag)
        return Reply(body, after)

    def _empty(self, path: str, pin: str | None) -> Reply:
        """No bytes (a range at or past the end), with the version from a metadata request."""
        version = self.version(path)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(b"", version)

    def put_options(self, origin_tag: str | None) -> dict[str, Any]:
        """Keyword arguments for `fs.open(path, "wb")` and `fs.pipe_file`."""
        return {}

    def write(self, path: str, head: bytes, rest: IO[bytes] | None, origin_tag: str | None) -> None:
        """Write `head`, then what is left in `rest` (None: `head` is all), as one object.

        Object stores publish it whole when the write completes; so does memory://.
        """
        options = self.put_options(origin_tag)
        if rest is None:
            self.fs.pipe_file(path, head, **options)
            return
        sink = self.fs.open(path, "wb", **options)
        try:
            sink.write(head)
            shutil.copyfileobj(rest, sink, len(head))
        except BaseException:
            _abandon(sink)
            raise
        sink.close()

    def remove(self, path: str) -> None:
        self.fs.rm_file(path)


def _abandon(sink: Any) -> None:
    """Drop a write in progress unpublished: fsspec's files upload what they hold on close(),
    even when leaving a `with` block by an exception."""
    from fsspec.spec import AbstractBufferedFile

    with contextlib.suppress(Exception):
        sink.discard()  # gcsfs: cancels the resumable upload
    if isinstance(sink, AbstractBufferedFile):
        sink.closed = True  # close() now does nothing
    else:
        with contextlib.suppress(Exception):
            sink.close()


class MemoryBackend(Backend):
    """memory://: a file opened for writing is in the store from the start and grows as it
    is written, so every write is one `pipe_file` of the whole object."""

    def write(self, path: str, head: bytes, rest: IO[bytes] | None, origin_tag: str | None) -> None:
        self.fs.pipe_file(path, head if rest is None else head + rest.read())


TEMP_PREFIX = ".csf-tmp-"
"""A local write in progress, renamed over its key when done; never listed as a key."""


class LocalBackend(Backend):
    """Local files: written beside their place under a temporary name, then renamed over it,
    so a reader sees the old file or the new one, never a part."""

    def write(self, path: str, head: bytes, rest: IO[bytes] | None, origin_tag: str | None) -> None:
        temp = f"{path.rpartition('/')[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            super().write(temp, head, rest, origin_tag)
            self.fs.mv(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.rm_file(temp)
            raise


_ORIGIN_TAG = "csf_etag"  # metadata: the origin's tag (Azure allows no "-" in the name)


class HttpBackend(Backend):
    """fsspec's HTTP filesystem, with requests of our own on its aiohttp session.

    Versions are the `ETag` (a strong one pins a read with `If-Match`) or else
    `Last-Modified` (pinned with `If-Unmodified-Since`); revalidation is one GET with
    `If-None-Match` / `If-Modified-Since`, answered by 304 with no body.  A server that
    ignores a precondition is caught too: every response's version is compared.  Integrity
    from `Repr-Digest` (sha-256 or md5, RFC 9530), or `Content-MD5` on a whole response.
    """

    conditional = True
    writable = False

    def version(self, path: str) -> Version:
        status, headers, _ = self._get(path, {}, method="HEAD")
        if status == 404:
            raise NotFound
        self._raise_for(status, path)
        return self._from_headers(headers, int(headers.get("Content-Length", 0)))

    def fetch(
        self, path: str, start: int, end: int, *, pin: str | None = None, unless: str | None = None
    ) -> Reply | None:
        if start >= end:
            return self._empty(path, pin)
        headers = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity"}
        if pin is not None:
            headers.update(self._precondition(pin, match=True))
        if unless is not None:
            headers.update(self._precondition(unless, match=False))
        status, reply_headers, body = self._get(path, headers)
        if status == _NOT_MODIFIED:
            return None
        if status == _PRECONDITION_FAILED:
            raise Changed(None)
        if status == 404:
            raise Changed(None) if pin is not None else NotFound
        if status == _NO_RANGE:
            return self._empty(path, pin)
        self._raise_for(status, path)
        if status == 200 and (start or end < len(body)):  # the server ignored the range
            body = body[start:end]
        size = _size_of(reply_headers, body)
        version = self._from_headers(reply_headers, size, whole=len(body) == size)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        if unless is not None and version.tag == unless:
            return None
        return Reply(body, version)

    @staticmethod
    def _precondition(tag: str, *, match: bool) -> dict[str, str]:
        if tag.startswith("last-modified:"):
            date = tag.removeprefix("last-modified:")
            return {"If-Unmodified-Since" if match else "If-Modified-Since": date}
        if match and tag.startswith("W/"):
            return {}  # If-Match compares strongly; the response's tag is compared instead
        return {"If-Match" if match else "If-None-Match": tag}

    @staticmethod
    def _from_headers(headers: Any, size: int, *, whole: bool = False) -> Version:
        """`whole`: the response's body is the whole object, so Content-MD5 is its MD5."""
        modified = headers.get("Last-Modified")
        tag = headers.get("ETag") or (f"last-modified:{modified}" if modified else None)
        digests = _repr_digests(headers.get("Repr-Digest", ""))
        return Version(
            tag,
            size,
            _timestamp(modified),
            md5=digests.get("md5") or (_b64(headers.get("Content-MD5")) if whole else None),
            sha256=digests.get("sha-256"),
        )

    @staticmethod
    def _raise_for(status: int, path: str) -> None:
        if status >= 400:
            raise OSError(f"HTTP {status} for {path}")

    def _get(
        self, path: str, headers: dict[str, str], method: str = "GET"
    ) -> tuple[int, Any, bytes]:
        from fsspec.asyn import sync

        return sync(self.fs.loop, self._request, method, path, headers)  # type: ignore[no-any-return]

    async def _request(
        self, method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, Any, bytes]:
        import yarl

        session = await self.fs.set_session()
        options = dict(self.fs.kwargs)
        headers = {**options.pop("headers", {}), **headers}
        url = yarl.URL(path, encoded=True)
        async with session.request(method, url, headers=headers, **options) as response:
            body = await response.read() if method == "GET" else b""
            return response.status, response.headers, body


def quote_http(path: str) -> str:
    """A key's path under an http(s) root as the URL a server expects."""
    return urllib.parse.quote(path, safe="/")


class GcsBackend(Backend):
    """gcsfs: versions are GCS generations; reads are media GETs pinned with `generation=`.

    A read starts with one media GET whose headers give the generation, the MD5 and CRC32C
    and the object's metadata; the rest is pinned to that generation, which GCS refuses (404)
    once it is no longer current, so a read never mixes two generations.  Revalidation is one
    metadata GET (no body bytes): GCS emulators don't answer the conditional media GET
    (`ifGenerationNotMatch`).
    """

    def __init__(self, fs: Any) -> None:
        super().__init__(fs)
        logging.getLogger("gcsfs").addFilter(_EXPECTED_RANGE_REFUSAL)  # added once

    def version(self, path: str) -> Version:
        """One metadata GET (gcsfs's `info` may list the parent too, to find a directory)."""
        from fsspec.asyn import sync

        self.fs.invalidate_cache(path)
        try:
            return self._version(sync(self.fs.loop, self.fs._get_object, path))
        except FileNotFoundError:
            raise NotFound from None

    def _version(self, info: dict[str, Any]) -> Version:
        generation = info.get("generation")
        return Version(
            str(generation) if generation else info.get("etag"),
            int(info["size"]),
            _timestamp(info.get("mtime")),
            md5=_b64(info.get("md5Hash")),
            crc32c=_b64(info.get("crc32c")),
            origin_tag=(info.get("metadata") or {}).get(_ORIGIN_TAG),
        )

    def fetch(
        self, path: str, start: int, end: int, *, pin: str | None = None, unless: str | None = None
    ) -> Reply | None:
        from fsspec.asyn import sync

        if start >= end:
            return self._empty(path, pin)
        url = self.fs.url(path, generation=pin)
        try:
            headers, body = sync(
                self.fs.loop,
                self.fs._call,
                "GET",
                url,
                headers={"Range": f"bytes={start}-{end - 1}"},
            )
        except FileNotFoundError:
            raise Changed(None) if pin is not None else NotFound from None
        except Exception as exc:
            if getattr(exc, "code", None) != _NO_RANGE:
                raise
            return self._empty(path, pin)
        tag = headers.get("X-Goog-Generation")
        if pin is not None and tag != pin:
            raise Changed(tag)
        hashes = dict(
            part.strip().split("=", 1)
            for part in headers.get("X-Goog-Hash", "").split(",")
            if "=" in part
        )
        size = _size_of(headers, body)
        version = Version(
            tag,
            size,
            _timestamp(headers.get("Last-Modified")),
            md5=_b64(hashes.get("md5")),
            crc32c=_b64(hashes.get("crc32c")),
            origin_tag=headers.get(f"X-Goog-Meta-{_ORIGIN_TAG}"),
        )
        return Reply(body, version)

    def put_options(self, origin_tag: str | None) -> dict[str, Any]:
        return {"metadata": {_ORIGIN_TAG: origin_tag}} if origin_tag else {}


class AzureBackend(Backend):
    """adlfs's service client: versions are blob ETags; reads are Get Blob calls with
    `If-Match`, revalidation one with `If-None-Match` (304, no body); integrity from the
    blob's Content-MD5.  Every call goes to the Blob SDK with the blob's name as it is
    (adlfs reads a `?` in a path as a query and drops a trailing one)."""

    conditional = True

    @staticmethod
    def _blob(path: str) -> tuple[str, str]:
        container, _, blob = path.partition("/")
        return container, blob

    def _client(self, path: str) -> Any:
        return self.fs.service_client.get_blob_client(*self._blob(path))

    def _run(self, coroutine: Any) -> Any:
        from fsspec.asyn import sync

        async def run() -> Any:
            return await coroutine

        return sync(self.fs.loop, run)

    def version(self, path: str) -> Version:
        return self._run(self._properties(path))  # type: ignore[no-any-return]

    async def _properties(self, path: str) -> Version:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with self._client(path) as client:
                properties = await client.get_blob_properties()
        except ResourceNotFoundError:
            raise NotFound from None
        return self._of(properties, properties.size)

    @staticmethod
    def _of(properties: Any, size: int) -> Version:
        return Version(
            properties.etag,
            size,
            _timestamp(properties.last_modified),
            md5=_b64(properties.content_settings.content_md5),
            origin_tag=(properties.metadata or {}).get(_ORIGIN_TAG),
        )

    def fetch(
        self, path: str, start: int, end: int, *, pin: str | None = None, unless: str | None = None
    ) -> Reply | None:
        if start < end:
            try:
                return self._run(self._download(path, start, end, pin, unless))  # type: ignore[no-any-return]
            except _PastTheEnd:
                pass
        return self._empty(path, pin)

    async def _download(
        self, path: str, start: int, end: int, pin: str | None, unless: str | None
    ) -> Reply | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        condition: dict[str, Any] = {}
        if pin is not None:
            condition = {"etag": pin, "match_condition": MatchConditions.IfNotModified}
        elif unless is not None:
            condition = {"etag": unless, "match_condition": MatchConditions.IfModified}
        try:
            async with self._client(path) as client:
                downloader = await client.download_blob(
                    offset=start, length=end - start, **condition
                )
                body = await downloader.readall()
        except ResourceNotFoundError:
            raise Changed(None) if pin is not None else NotFound from None
        except HttpResponseError as exc:  # the SDK raises one type for 304 and 412 alike
            if exc.status_code == _NOT_MODIFIED:
                return None
            if exc.status_code == _PRECONDITION_FAILED:
                raise Changed(None) from None
            if exc.status_code == _NO_RANGE:  # `start` at or past the end
                raise _PastTheEnd from None
            raise
        properties = downloader.properties
        total = str(properties.content_range or "").rpartition("/")[2]
        version = self._of(properties, int(total) if total.isdigit() else properties.size)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(body, version)

    def write(self, path: str, head: bytes, rest: IO[bytes] | None, origin_tag: str | None) -> None:
        """One Put Blob, or blocks committed by one Put Block List: published whole."""
        data: Any = head
        if rest is not None:
            data = itertools.chain([head], iter(lambda: rest.read(len(head)), b""))
        self._run(self._upload(path, data, origin_tag))

    async def _upload(self, path: str, data: Any, origin_tag: str | None) -> None:
        metadata = {_ORIGIN_TAG: origin_tag} if origin_tag else None
        async with self._client(path) as client:
            await client.upload_blob(data, overwrite=True, metadata=metadata)

    def remove(self, path: str) -> None:
        self._run(self._delete(path))

    async def _delete(self, path: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            async with self._client(path) as client:
                await client.delete_blob()
        except ResourceNotFoundError:
            raise FileNotFoundError(path) from None


def backend_for(fs: Any) -> Backend:
    """The reader for this filesystem, by its protocol."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"http", "https"}:
        return HttpBackend(fs)
    if protocols & {"gs", "gcs"}:
        return GcsBackend(fs)
    if protocols & {"az", "abfs", "abfss"}:
        return AzureBackend(fs)
    if protocols & {"file", "local"}:
        return LocalBackend(fs)
    if "memory" in protocols:
        return MemoryBackend(fs)
    return Backend(fs)
