"""How FsspecStore reads one backend: a version for each object, and reads pinned to one.

fsspec's own API has no conditional reads, so each backend that has them gets a small reader
of its own here (HTTP's headers, GCS's generations, Azure's ETags), built on the client the
filesystem already holds.  Any other filesystem is read through fsspec and checked against
its `info()` before and after.
"""

from __future__ import annotations

import base64
import email.utils
import urllib.parse
from typing import Any, NamedTuple

__all__ = ["Backend", "Changed", "Reply", "Version", "backend_for"]

_NOT_MODIFIED = 304
_PRECONDITION_FAILED = 412
_NO_RANGE = 416


class Version(NamedTuple):
    """One version of an object: what a read is pinned to and checked against."""

    tag: str | None  # GCS generation, an ETag, "last-modified:<date>", or a local file's
    size: int
    modified: float | None
    md5: bytes | None = None  # the whole object's, as the backend reports it
    crc32c: bytes | None = None
    origin_tag: str | None = None  # the origin's tag this object was cached under, if kept


class Reply(NamedTuple):
    body: bytes
    version: Version


class Changed(Exception):  # noqa: N818 - a signal, caught inside the store
    """The object is no longer the pinned version (`found`, if known, is the new tag)."""

    def __init__(self, found: str | None = None) -> None:
        super().__init__(found)
        self.found = found


class _PastTheEnd(Exception):  # noqa: N818 - a signal, caught inside this module
    """A range that starts at or past the end of the object."""


class NotFound(Exception):  # noqa: N818 - a signal, caught inside the store
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
    keeps_metadata = False  # put() can record the origin's tag with the object

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

    def put_options(self, origin_tag: str | None) -> dict[str, Any]:
        """Keyword arguments for `fs.open(path, "wb")` and `fs.pipe_file`."""
        return {}

    def pipe(self, path: str, data: bytes, origin_tag: str | None) -> None:
        """Write a whole (small) object in one request."""
        self.fs.pipe_file(path, data, **self.put_options(origin_tag))


_ORIGIN_TAG = "csf_etag"  # metadata: the origin's tag (Azure allows no "-" in the name)


class HttpBackend(Backend):
    """fsspec's HTTP filesystem, with requests of our own on its aiohttp session.

    Versions are the `ETag` (a strong one pins a read with `If-Match`) or else
    `Last-Modified` (pinned with `If-Unmodified-Since`); revalidation is one GET with
    `If-None-Match` / `If-Modified-Since`, answered by 304 with no body.  A server that
    ignores a precondition is caught too: every response's version is compared.
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
        version = self._from_headers(reply_headers, _size_of(reply_headers, body))
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        if unless is not None and version.tag == unless:
            return None
        return Reply(body, version)

    def _empty(self, path: str, pin: str | None) -> Reply:
        version = self.version(path)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(b"", version)

    @staticmethod
    def _precondition(tag: str, *, match: bool) -> dict[str, str]:
        if tag.startswith("last-modified:"):
            date = tag.removeprefix("last-modified:")
            return {"If-Unmodified-Since" if match else "If-Modified-Since": date}
        if match and tag.startswith("W/"):
            return {}  # If-Match compares strongly; the response's tag is compared instead
        return {"If-Match" if match else "If-None-Match": tag}

    @staticmethod
    def _from_headers(headers: Any, size: int) -> Version:
        modified = headers.get("Last-Modified")
        tag = headers.get("ETag") or (f"last-modified:{modified}" if modified else None)
        return Version(tag, size, _timestamp(modified), md5=_b64(headers.get("Content-MD5")))

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

    A pinned read of a generation that is no longer current is refused by GCS (404), so a
    read never mixes two generations.  The store asks for the metadata first (one GET, no
    body bytes: the revalidation), which also gives the MD5 and CRC32C and the object's size
    (so an empty object needs no media GET, which GCS would refuse as an unsatisfiable
    range); GCS emulators don't answer the conditional media GET (`ifGenerationNotMatch`).
    """

    keeps_metadata = True

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
        )
        return Reply(body, version)

    def _empty(self, path: str, pin: str | None) -> Reply:
        version = self.version(path)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(b"", version)

    def put_options(self, origin_tag: str | None) -> dict[str, Any]:
        return {"metadata": {_ORIGIN_TAG: origin_tag}} if origin_tag else {}


class AzureBackend(Backend):
    """adlfs: versions are blob ETags; reads are Get Blob calls with `If-Match`, revalidation
    one with `If-None-Match` (304, no body).  Integrity from the blob's Content-MD5."""

    conditional = True
    keeps_metadata = True

    def _version(self, info: dict[str, Any]) -> Version:
        settings = info.get("content_settings") or {}
        return Version(
            info.get("etag"),
            int(info["size"]),
            _timestamp(info.get("last_modified")),
            md5=_b64(settings.get("content_md5")),
            origin_tag=(info.get("metadata") or {}).get(_ORIGIN_TAG),
        )

    def fetch(
        self, path: str, start: int, end: int, *, pin: str | None = None, unless: str | None = None
    ) -> Reply | None:
        from fsspec.asyn import sync

        if start < end:
            try:
                return sync(self.fs.loop, self._download, path, start, end, pin, unless)  # type: ignore[no-any-return]
            except _PastTheEnd:
                pass
        version = self.version(path)
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(b"", version)

    async def _download(
        self, path: str, start: int, end: int, pin: str | None, unless: str | None
    ) -> Reply | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        container, blob, _ = self.fs.split_path(path)
        condition: dict[str, Any] = {}
        if pin is not None:
            condition = {"etag": pin, "match_condition": MatchConditions.IfNotModified}
        elif unless is not None:
            condition = {"etag": unless, "match_condition": MatchConditions.IfModified}
        try:
            async with self.fs.service_client.get_blob_client(container, blob) as client:
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
        settings = properties.content_settings
        total = str(properties.content_range or "").rpartition("/")[2]
        version = Version(
            properties.etag,
            int(total) if total.isdigit() else properties.size,
            _timestamp(properties.last_modified),
            md5=_b64(settings.content_md5),
            origin_tag=(properties.metadata or {}).get(_ORIGIN_TAG),
        )
        if pin is not None and version.tag != pin:
            raise Changed(version.tag)
        return Reply(body, version)

    def put_options(self, origin_tag: str | None) -> dict[str, Any]:
        return {"metadata": {_ORIGIN_TAG: origin_tag}} if origin_tag else {}

    def pipe(self, path: str, data: bytes, origin_tag: str | None) -> None:
        """One Put Blob (adlfs's `pipe_file` sets metadata of its own)."""
        from fsspec.asyn import sync

        sync(self.fs.loop, self._upload, path, data, origin_tag)

    async def _upload(self, path: str, data: bytes, origin_tag: str | None) -> None:
        container, blob, _ = self.fs.split_path(path)
        metadata = {_ORIGIN_TAG: origin_tag} if origin_tag else None
        async with self.fs.service_client.get_blob_client(container, blob) as client:
            await client.upload_blob(data, overwrite=True, metadata=metadata)


def backend_for(fs: Any) -> Backend:
    """The reader for this filesystem, by its protocol."""
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    if protocols & {"http", "https"}:
        return HttpBackend(fs)
    if protocols & {"gs", "gcs"}:
        return GcsBackend(fs)
    if protocols & {"az", "abfs", "abfss"}:
        return AzureBackend(fs)
    return Backend(fs)
