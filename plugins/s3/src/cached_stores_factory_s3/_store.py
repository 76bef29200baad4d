"""S3Store: objects in an S3 bucket (AWS, MinIO, R2, moto), as a remote or as a cache.

A read is one streaming GET: no HEAD first, a missing object is the GET's 404.  Writes up to
`multipart_threshold` are one PUT; larger ones go through boto3's multipart upload, reading
the source in parts so memory stays bounded.  `stat` is one HEAD and exposes the ETag and
Last-Modified.  boto3 is imported when a store is built, never when the plugin loads.

Faults: every failure left after botocore's retries is a RemoteError naming the bucket.
Uploads carry a CRC32 checksum and reads validate the object's checksum where it has one,
so bytes damaged in transit are refused, not cached.  A body that breaks off mid-stream is
resumed with a ranged GET conditional on the first response's ETag (IfMatch), so two
versions are never spliced; if that fails too, the read raises RemoteError and never ends
as if the object were complete.  `open_read_if_changed` is a GET with IfNoneMatch: an
unchanged object answers 304 with no body.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import threading
import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import IO, Any

from cached_stores_factory import (
    BytesReader,
    EntryReader,
    EntryStat,
    Store,
    validate_key,
    whole_number,
)
from cached_stores_factory._keys import validate_prefix
from cached_stores_factory.errors import (
    ConfigError,
    EntryChangedError,
    InvalidKeyError,
    KeyNotFoundError,
    RemoteError,
    redact,
)

__all__ = ["MIN_PART_SIZE", "S3Store"]

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
"""S3 refuses multipart parts smaller than this (except the last)."""

# Pinned client settings (botocore's defaults differ by version and by environment):
# "standard" retry mode (retries throttling, 5xx and connection errors with backoff and a
# retry quota) with 5 attempts in all (botocore's `max_attempts` would count only retries);
# 5 s to connect, 60 s between bytes of a response.
# Checksums (CRC32, botocore's default algorithm) on every upload and download that supports
# them; `checksums=False` sends them only where S3 requires them, for the S3-compatible
# servers that reject them.
_RETRIES = {"mode": "standard", "total_max_attempts": 5}
_CONNECT_TIMEOUT = 5
_READ_TIMEOUT = 60
_READ_BUFFER = 256 * 1024
_ETAG_META = "csf-etag"  # the origin's ETag, when this bucket caches another store
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_BUCKET_NAME = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")  # botocore's own check, made at config time
_NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
_RESUMES = 2  # ranged GETs after a body broke off, beyond botocore's retries of each request

# Environment variables that change what a profile means; part of the session cache's key.
_PROFILE_ENVIRONMENT = ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_PROFILE")
_sessions: dict[tuple[str | None, ...], Any] = {}
_sessions_lock = threading.Lock()


def _s3_client(profile: str | None, region: str | None, **kwargs: Any) -> Any:
    """An S3 client from the process's one boto3 session for this profile and region.

    Building a session loads botocore's service models (a quarter of a second); stores that
    share a profile, like the two buckets of the original Example 3, share the session.
    Sessions are not thread-safe, so clients are made under a lock; clients themselves are.
    """
    import boto3

    key = (profile, region, *(os.environ.get(name) for name in _PROFILE_ENVIRONMENT))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session(
                profile_name=profile, region_name=region
            )
        return session.client("s3", **kwargs)


class _Body(io.RawIOBase):
    """A GET's body as a raw stream (for an io.BufferedReader) that resumes where it broke.

    When the body breaks off (a reset, a read timeout, fewer bytes than its Content-Length),
    the rest is asked for with a ranged GET conditional on the first response's ETag, so a
    newer version is never spliced onto the old one's head; at most `_RESUMES` times.  What
    cannot be resumed raises RemoteError.  Every read goes to the body, the last one too:
    botocore validates the object's checksum on the read that finds the end.  A ranged
    response carries no checksum, so after a resume this stream carries on the checksum
    botocore began over the bytes before the break and checks the whole object at its end.
    """

    def __init__(
        self, store: S3Store, key: str, response: dict[str, Any], start: int | None = None
    ) -> None:
        super().__init__()
        self._store = store
        self._key = key
        self._body = response["Body"]
        self._size: int = response["ContentLength"]
        # A ranged GET's body begins at `start` and resumes within its range only.
        self._start = start or 0
        self._last = "" if start is None else str(start + self._size - 1)
        self._etag: str | None = response.get("ETag")
        self._position = 0
        self._resumes = 0
        self._breaks: tuple[type[BaseException], ...] = (*store._errors, OSError)
        self._carried: tuple[Any, str] | None = None  # botocore's running checksum, expected

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            try:
                data = self._body.read(len(buffer))
            except self._store._checksum_errors as exc:
                raise self._failure(f"its checksum does not match: {exc}") from None
            except self._breaks as exc:
                self._resume(exc)
                continue
            if not data and self._position < self._size:
                self._resume(None)  # ended early without an error
                continue
            if self._carried is not None:
                self._check_carried(data)
            buffer[: len(data)] = data
            self._position += len(data)
            return len(data)

    def _check_carried(self, data: bytes) -> None:
        """Carry the object's checksum over resumed bytes; check it at the end."""
        assert self._carried is not None
        checksum, expected = self._carried
        checksum.update(data)
        if not data and checksum.digest() != base64.b64decode(expected):
            raise self._failure(f"its checksum does not match: expected {expected}")

    def _failure(self, what: str) -> RemoteError:
        return RemoteError(f"{self._store._where(self._key)}: reading the object failed: {what}")

    def _resume(self, cause: BaseException | None) -> None:
        broke = f"the body broke off after {self._position} of {self._size} bytes"
        reason = f"{broke} ({self._store._clean(cause)})" if cause is not None else broke
        if self._resumes >= _RESUMES or self._etag is None:
            raise self._failure(reason)
        self._resumes += 1
        checksum, expected = (
            getattr(self._body, "checksum", None),
            getattr(self._body, "_expected", None),
        )
        if self._carried is None and checksum is not None and isinstance(expected, str):
            self._carried = (checksum, expected)
        self._body.close()
        store = self._store
        try:
            response = store._client.get_object(
                Bucket=store.bucketname,
                Key=store._name(self._key),
                Range=f"bytes={self._start + self._position}-{self._last}",
                IfMatch=self._etag,
            )
        except store._client_error as exc:
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise self._failure(
                    f"{reason}, and the object changed before the rest could be read"
                ) from None
            raise self._failure(f"{reason}; resuming failed: {store._clean(exc)}") from None
        except store._errors as exc:
            raise self._failure(f"{reason}; resuming failed: {store._clean(exc)}") from None
        self._body = response["Body"]

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class _Chained(io.RawIOBase):
    """`head` then the rest of `stream`: the bytes read to choose PUT or multipart, put back."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        super().__init__()
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            count = min(len(buffer), len(self._head))
            buffer[:count] = self._head[:count]
            # Once consumed, drop the view so the head's bytes can be freed mid-upload.
            self._head = self._head[count:] if count < len(self._head) else memoryview(b"")
            return count
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_up_to(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`: fewer only at its end."""
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := stream.read(min(left, MiB))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class S3Store(Store):
    """Objects in `bucketname`, under the key prefix `prefix`.

    Credentials, region and endpoint come from the AWS profile `s3_profile` (or the default
    chain); `s3_region` and `endpoint_url` override them.  A profile may set `endpoint_url`
    in its config section, which is how MinIO, R2 or a test server are reached without code
    changes.  Other keyword arguments go to `session.client("s3", ...)`; a `config` there is
    merged over the pinned one.  The bucket must exist.
    """

    argument_checks = MappingProxyType(
        {
            "multipart_threshold": whole_number(0),
            "multipart_chunksize": whole_number(MIN_PART_SIZE),
        }
    )

    def __init__(
        self,
        bucketname: str,
        s3_profile: str | None = None,
        s3_region: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
        *,
        multipart_threshold: int = 8 * MiB,
        multipart_chunksize: int = 8 * MiB,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        checksums: bool = True,
        **client_kwargs: Any,
    ) -> None:
        if not isinstance(bucketname, str) or not bucketname:
            raise ConfigError(f"S3Store needs a bucket name, not {bucketname!r}")
        if not (_BUCKET_NAME.fullmatch(bucketname) or bucketname.startswith("arn:")):
            raise ConfigError(
                f"S3Store bucket name {bucketname!r} may hold only letters, digits, '.', '-' "
                "and '_' (or be an access point ARN)"
            )
        self.check_arguments(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        if prefix and (prefix.startswith("/") or "//" in prefix):
            raise ConfigError(f"S3Store prefix {prefix!r} must be a relative key prefix")
        import boto3.exceptions
        import botocore.exceptions
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucketname = bucketname
        self.prefix = prefix
        self.profile = s3_profile
        self.multipart_threshold = multipart_threshold
        self._secrets = (aws_secret_access_key, aws_session_token)
        credentials = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        client_kwargs.update({k: v for k, v in credentials.items() if v is not None})
        self._client_error = botocore.exceptions.ClientError
        self._errors: tuple[type[BaseException], ...] = (
            botocore.exceptions.BotoCoreError,
            botocore.exceptions.ClientError,
            boto3.exceptions.Boto3Error,
        )
        self._checksum_errors: tuple[type[BaseException], ...] = (
            botocore.exceptions.FlexibleChecksumError,
        )
        checksum_mode = "when_supported" if checksums else "when_required"
        config = Config(
            retries=_RETRIES,
            connect_timeout=_CONNECT_TIMEOUT,
            read_timeout=_READ_TIMEOUT,
            request_checksum_calculation=checksum_mode,
            response_checksum_validation=checksum_mode,
        )
        if "config" in client_kwargs:
            config = config.merge(client_kwargs.pop("config"))
        try:
            self._client: Any = _s3_client(
                s3_profile, s3_region, endpoint_url=endpoint_url, config=config, **client_kwargs
            )
        except botocore.exceptions.ProfileNotFound as exc:
            raise ConfigError(f"S3Store: {exc}") from None
        except self._errors as exc:
            raise RemoteError(f"S3Store for bucket {bucketname!r}: {self._clean(exc)}") from None
        self.region: str | None = self._client.meta.region_name
        self.endpoint_url: str = self._client.meta.endpoint_url
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=4,
        )
        # Once the interpreter is shutting down, thread pools refuse new work: uploads that
        # still run then (a handle committed at exit) send their parts one by one.
        self._transfer_at_exit = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            use_threads=False,
        )

    def __repr__(self) -> str:
        return (
            f"S3Store(bucketname={self.bucketname!r}, prefix={self.prefix!r}, "
            f"s3_profile={self.profile!r}, s3_region={self.region!r}, "
            f"endpoint_url={self.endpoint_url!r})"
        )

    def close(self) -> None:
        self._client.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self.prefix + key

    def _where(self, key: str = "") -> str:
        return f"s3://{self.bucketname}/{self._name(key)}"

    def _clean(self, exc: BaseException | None) -> str:
        """The error's message without secrets, on one line (botocore's can span several)."""
        return " ".join(line.strip() for line in redact(str(exc), self._secrets).splitlines())

    @contextlib.contextmanager
    def _calling(self, key: str = "") -> Iterator[None]:
        """Map a missing object to KeyNotFoundError and every other failure to RemoteError."""
        try:
            yield
        except self._client_error as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                raise KeyNotFoundError(key, self._where()) from None
            raise RemoteError(f"{self._where(key)}: {self._clean(exc)}") from None
        except self._errors as exc:
            raise RemoteError(f"{self._where(key)}: {self._clean(exc)}") from None

    @staticmethod
    def _stat(response: dict[str, Any]) -> EntryStat:
        metadata = response.get("Metadata") or {}
        return EntryStat(
            size=response["ContentLength"],
            modified=response["LastModified"].timestamp(),
            etag=metadata.get(_ETAG_META) or response.get("ETag"),
        )

    # -- reading ----------------------------------------------------------------------------

    def open_read(self, key: str) -> EntryReader:
        """One streaming GET; its 404 is the KeyNotFoundError, so a miss costs one request."""
        with self._calling(key):
            response = self._client.get_object(Bucket=self.bucketname, Key=self._name(key))
        return self._reader(key, response)

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        """One GET with IfNoneMatch: None on S3's 304 (no body sent), else the new version."""
        with self._calling(key):
            try:
                response = self._client.get_object(
                    Bucket=self.bucketname, Key=self._name(key), IfNoneMatch=etag
                )
            except self._client_error as exc:
                if exc.response.get("Error", {}).get("Code") in _NOT_MODIFIED_CODES:
                    return None
                raise
        return self._reader(key, response)

    def _reader(self, key: str, response: dict[str, Any]) -> EntryReader:
        body = _Body(self, key, response)
        return EntryReader(io.BufferedReader(body, _READ_BUFFER), self._stat(response))

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        """One ranged GET (`Range`, and `IfMatch` when given: S3 answers 412 if the object
        changed, which raises EntryChangedError).  The stat's etag is the object's own S3 ETag,
        the one `IfMatch` compares, even in a bucket that caches another store."""
        if not 0 <= start <= end:
            raise ValueError(f"a range needs 0 <= start <= end, not [{start}, {end})")
        if start == end:
            return self._empty_range(key, if_match)
        extra = {"IfMatch": if_match} if if_match is not None else {}
        with self._calling(key):
            try:
                response = self._client.get_object(
                    Bucket=self.bucketname,
                    Key=self._name(key),
                    Range=f"bytes={start}-{end - 1}",
                    **extra,
                )
            except self._client_error as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code == "PreconditionFailed" and if_match is not None:
                    raise EntryChangedError(key, if_match) from None
                if code != "InvalidRange":  # InvalidRange: `start` is at or past the end
                    raise
                response = None
        if response is None:
            return self._empty_range(key, if_match)
        total = int(
            str(response.get("ContentRange", "")).rpartition("/")[2] or response["ContentLength"]
        )
        stat = EntryStat(
            size=total, modified=response["LastModified"].timestamp(), etag=response.get("ETag")
        )
        body = _Body(self, key, response, start)
        return EntryReader(io.BufferedReader(body, _READ_BUFFER), stat)

    def _empty_range(self, key: str, if_match: str | None) -> EntryReader:
        """No bytes, and the whole object's stat from one HEAD."""
        with self._calling(key):
            response = self._client.head_object(Bucket=self.bucketname, Key=self._name(key))
        stat = EntryStat(
            size=response["ContentLength"],
            modified=response["LastModified"].timestamp(),
            etag=response.get("ETag"),
        )
        if if_match is not None and stat.etag != if_match:
            raise EntryChangedError(key, if_match, stat.etag)
        return EntryReader(BytesReader(), stat)

    def get(self, key: str) -> bytes:
        with self.open_read(key) as entry:
            return entry.read()

    def stat(self, key: str) -> EntryStat:
        """One HEAD: size, Last-Modified and the ETag (the origin's, if this bucket caches)."""
        with self._calling(key):
            return self._stat(self._client.head_object(Bucket=self.bucketname, Key=self._name(key)))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every valid key under the prefix; folder markers and other odd names are skipped."""
        return (key for key, _ in self.listing(prefix))

    def listing(self, prefix: str = "") -> Iterator[tuple[str, EntryStat]]:
        """`keys` with each object's size, Last-Modified and S3 ETag, as the listing gives
        them: a folder's details with no HEAD per object (csf:// uses it)."""
        validate_prefix(prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._calling():
            for page in paginator.paginate(Bucket=self.bucketname, Prefix=self._name(prefix)):
                for item in page.get("Contents", ()):
                    try:
                        key = validate_key(item["Key"][len(self.prefix) :])
                    except InvalidKeyError:
                        continue
                    modified = item["LastModified"].timestamp()
                    yield key, EntryStat(item["Size"], modified, item.get("ETag"))

    # -- writing ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """One PUT up to `multipart_threshold`, a multipart upload above it.

        `etag`, the origin's entity tag when this bucket caches another store, is kept in
        the object's metadata and reported by `stat`.
        """
        extra = {"Metadata": {_ETAG_META: etag}} if etag else {}
        seekable = stream.seekable()
        start = stream.tell() if seekable else 0
        head = _read_up_to(stream, self.multipart_threshold)
        name = self._name(key)
        with self._calling(key):
            if len(head) < self.multipart_threshold:
                response = self._client.put_object(
                    Bucket=self.bucketname, Key=name, Body=head, **extra
                )
                return EntryStat(
                    size=len(head), modified=time.time(), etag=etag or response["ETag"]
                )
            if seekable:
                stream.seek(start)
                source: IO[bytes] = stream
            else:
                source = io.BufferedReader(_Chained(head, stream), MiB)
            del head  # the parts are read from `source`; don't hold this copy meanwhile
            exiting = not threading.main_thread().is_alive()
            self._client.upload_fileobj(
                source,
                self.bucketname,
                name,
                ExtraArgs=extra or None,
                Config=self._transfer_at_exit if exiting else self._transfer,
            )
            # The multipart ETag and size come from S3 itself: one HEAD per large upload.
            return self._stat(self._client.head_object(Bucket=self.bucketname, Key=name))

    def delete(self, key: str) -> bool:
        """HEAD, then DELETE: S3 answers a DELETE the same whether the object existed or not."""
        if key not in self:
            return False
        with self._calling(key):
            self._client.delete_object(Bucket=self.bucketname, Key=self._name(key))
        return True

    def clear(self) -> int:
        """Delete every object under the prefix, a thousand per request."""
        batch: list[dict[str, str]] = []
        removed = 0
        for key in self.keys():
            batch.append({"Key": self._name(key)})
            if len(batch) == 1000:
                removed += self._delete_batch(batch)
                batch = []
        return removed + (self._delete_batch(batch) if batch else 0)

    def _delete_batch(self, batch: list[dict[str, str]]) -> int:
        with self._calling():
            response = self._client.delete_objects(
                Bucket=self.bucketname, Delete={"Objects": batch, "Quiet": False}
            )
        if response.get("Errors"):
            first = response["Errors"][0]
            raise RemoteError(f"{self._where(first.get('Key', ''))}: {first.get('Message')}")
        return len(response.get("Deleted", ()))
