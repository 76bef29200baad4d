"""S3Store: objects in an S3 bucket (AWS, MinIO, R2, moto), as a remote or as a cache.

A read is one streaming GET: no HEAD first, a missing object is the GET's 404.  Writes up to
`multipart_threshold` are one PUT; larger ones are a multipart upload that reads the source
in parts, a few in flight at once, so memory stays bounded.  `stat` is one HEAD and
exposes the ETag and Last-Modified.  boto3 is imported when a store is built, never when
the plugin loads.

Faults: every failure left after botocore's retries is a RemoteError naming the bucket.
Uploads of any size carry a whole-object CRC32 (a multipart upload's is S3's FULL_OBJECT
type), and whole-object reads check the body against the strongest whole-object value S3
offers: that checksum, else the MD5 an unencrypted object's ETag is, else the per-part MD5s
of a multipart ETag.  Bytes damaged in transit are refused, not cached; a read no value
covers is counted in `unverified_reads`.  An object in an archive storage class raises
ObjectArchivedError, and with `restore_days` set the read asks S3 to restore it.

A body that breaks off mid-stream is resumed with a ranged GET conditional on the first
response's ETag (IfMatch), so two versions are never spliced; if that fails too, the read
raises RemoteError and never ends as if the object were complete.  `open_read_if_changed`
is a GET with IfNoneMatch: an unchanged object answers 304 with no body.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import io
import itertools
import os
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import MappingProxyType
from typing import IO, Any, NamedTuple
from urllib.parse import urlsplit

from cached_stores_factory import (
    BytesReader,
    EntryReader,
    EntryStat,
    Store,
    positive_number,
    validate_key,
    whole_number,
)
from cached_stores_factory._keys import validate_prefix
from cached_stores_factory._store import seek_target
from cached_stores_factory.errors import (
    ConfigError,
    EntryChangedError,
    InvalidKeyError,
    KeyNotFoundError,
    ObjectArchivedError,
    RemoteError,
    redact,
)

__all__ = ["MIN_PART_SIZE", "RESTORE_TIERS", "RETRY_MODES", "RestoreState", "S3Store"]

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB
"""S3 refuses multipart parts smaller than this (except the last)."""

RETRY_MODES = ("standard", "adaptive", "legacy")
"""botocore's retry modes; "standard" retries throttling, 5xx and connection errors with
backoff and a retry quota."""
RESTORE_TIERS = ("Standard", "Bulk", "Expedited")
"""S3's retrieval tiers for a restore, from the usual to the cheapest and the fastest."""

# Checksums (CRC32, botocore's default algorithm) on every upload and download that supports
# them; `checksums=False` sends them only where S3 requires them, for the S3-compatible
# servers that reject them.
_READ_BUFFER = 256 * 1024
_PARTS_IN_FLIGHT = 4  # multipart parts uploaded at once (each holds one part in memory)
_MAX_PARTS = 10_000  # S3's limit on a multipart upload
_ARCHIVED_CODE = "InvalidObjectState"  # a GET of an object that must be restored first
_ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_RESTORE_EXPIRY = re.compile(r'expiry-date="([^"]+)"')
_NOT_MD5_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})  # their ETags are no MD5
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

    It seeks as a file does: a seek only moves the position, and the next read asks for the
    rest from there with a ranged GET conditional on the same ETag (none past the end).
    Bytes read after a seek are checked by that ETag alone, not by the object's checksum.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        response: dict[str, Any],
        start: int | None = None,
        digest: _ETagDigest | None = None,
    ) -> None:
        super().__init__()
        self._digest = digest  # checked at the end, over every byte, resumed ones too
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
        self._checksummed = True  # every byte so far was read in order: a checksum can carry
        self._moved = False  # a seek moved the position away from the body's

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = seek_target(offset, whence, self._position, self._size)
        if target != self._position:
            self._position = target
            self._moved = True
            self._checksummed = False
            self._carried = None
        return target

    def readinto(self, buffer: Any) -> int:
        if self._moved:
            if self._position >= self._size:
                return 0
            self._moved = False
            self._reopen(f"seeking to byte {self._position}")
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
            if self._digest is not None:
                self._check_digest(data)
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

    def _check_digest(self, data: bytes) -> None:
        assert self._digest is not None
        if data:
            self._digest.update(data)
        elif not self._digest.matches():
            raise self._failure(f"its bytes do not match its ETag {self._etag}")

    def _failure(self, what: str) -> RemoteError:
        return RemoteError(f"{self._store._where(self._key)}: reading the object failed: {what}")

    def _resume(self, cause: BaseException | None) -> None:
        broke = f"the body broke off after {self._position} of {self._size} bytes"
        reason = f"{broke} ({self._store._clean(cause)})" if cause is not None else broke
        if self._resumes >= _RESUMES:
            raise self._failure(reason)
        self._resumes += 1
        checksum, expected = (
            getattr(self._body, "checksum", None),
            getattr(self._body, "_expected", None),
        )
        if (
            self._checksummed
            and self._carried is None
            and checksum is not None
            and isinstance(expected, str)
        ):
            self._carried = (checksum, expected)
        self._reopen(reason)

    def _reopen(self, reason: str) -> None:
        """Ask for the rest from `_position` with a ranged GET conditional on the ETag."""
        if self._etag is None:
            raise self._failure(f"{reason}, but the object has no ETag to read on from")
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


class _ETagDigest:
    """The MD5s an S3 ETag is made of, computed over a body as it streams by.

    An unencrypted (or SSE-S3) single-part object's ETag is its bytes' MD5; a multipart
    object's is the MD5 of its parts' MD5s, then "-" and the number of parts.  `part_sizes`
    is empty for a single-part object.
    """

    def __init__(self, etag: str, part_sizes: list[int]) -> None:
        self._expected = etag.strip('"')
        self._sizes = collections.deque(part_sizes)
        self._multipart = bool(part_sizes)
        self._left = self._sizes.popleft() if part_sizes else -1
        self._hash = hashlib.md5(usedforsecurity=False)
        self._parts: list[bytes] = []
        self._overflow = False  # more bytes than the parts hold

    def update(self, data: bytes) -> None:
        if not self._multipart:
            self._hash.update(data)
            return
        view = memoryview(data)
        while view:
            if self._left <= 0:
                self._overflow = True
                return
            taken, view = view[: self._left], view[self._left :]
            self._hash.update(taken)
            self._left -= len(taken)
            if self._left == 0:
                self._parts.append(self._hash.digest())
                self._hash = hashlib.md5(usedforsecurity=False)
                self._left = self._sizes.popleft() if self._sizes else -1

    def matches(self) -> bool:
        if not self._multipart:
            return self._hash.hexdigest() == self._expected
        if self._overflow or self._sizes or self._left > 0:
            return False
        combined = hashlib.md5(b"".join(self._parts), usedforsecurity=False).hexdigest()
        return f"{combined}-{len(self._parts)}" == self._expected


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


_Submit = Callable[..., "Future[Any]"]


def _run_now(function: Callable[..., Any], /, **kwargs: Any) -> Future[Any]:
    """Call `function` here and now, as a finished Future (pools refuse work at exit)."""
    future: Future[Any] = Future()
    try:
        future.set_result(function(**kwargs))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _crc32_text(crc: int) -> str:
    """A CRC32 as S3 writes it: the 4 bytes big-endian, in base64."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode()


def _read_up_to(stream: IO[bytes], limit: int) -> bytes:
    """Up to `limit` bytes of `stream`: fewer only at its end."""
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := stream.read(min(left, MiB))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    """A check that a value is one of `choices`, for `argument_checks`."""

    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}"

    return check


class RestoreState(NamedTuple):
    """Where one object stands: readable, or archived and how far its restore has come.

    `state` is "readable" (not archived), "none" (archived, no restore asked for),
    "requested" (asked for by this call), "in progress", or "done" (a restored copy is
    readable until `expiry`, an HTTP date).  `storage_class` names the class, and the
    Intelligent-Tiering archive tier in brackets.
    """

    key: str
    storage_class: str
    state: str
    expiry: str | None = None

    @property
    def readable(self) -> bool:
        return self.state in ("readable", "done")


class S3Store(Store):
    """Objects in `bucketname`, under the key prefix `prefix`.

    Credentials, region and endpoint come from the AWS profile `s3_profile` (or the default
    chain); `s3_region` and `endpoint_url` override them.  A profile may set `endpoint_url`
    in its config section, which is how MinIO, R2 or a test server are reached without code
    changes.  The bucket must exist.

    Args:
        bucketname: The bucket: letters, digits, '.', '-' and '_', or an access point ARN.
        s3_profile: The AWS profile (from `~/.aws/config`) for credentials, region and
            endpoint; None uses the default chain.
        s3_region: The region, over the profile's or the environment's.
        prefix: Prepended to every object key, so a cache can use part of a bucket.
        endpoint_url: An S3-compatible endpoint (MinIO, R2, ...), over the profile's.
        multipart_threshold: Writes of at least this many bytes use a multipart upload.
        multipart_chunksize: The size of each uploaded part, in bytes.
        aws_access_key_id: An access key, instead of the profile's.
        aws_secret_access_key: Its secret.  Never shown in reprs, logs or errors.
        aws_session_token: A session token for temporary credentials.  Never shown.
        connect_timeout: Seconds to connect, per request.
        read_timeout: Seconds to wait for each read of a response, per request.
        max_attempts: Requests in all for one call, the first included.
        retry_mode: botocore's retry mode: "standard", "adaptive" or "legacy".
        restore_days: When set, a read of an archived object asks S3 to restore it for this
            many days (see docs/stores.md, *Archived objects*).
        restore_tier: The restore's retrieval tier: "Standard", "Bulk" or "Expedited".
        checksums: CRC32 checksums sent with uploads and checked on downloads, so damage in
            transit is refused; False sends them only where S3 requires them, for
            S3-compatible servers that reject them.
        **client_kwargs: Passed to `session.client("s3", ...)` (`verify`, for example); a
            `config` there is merged over the pinned one.
    """

    argument_checks = MappingProxyType(
        {
            "multipart_threshold": whole_number(0),
            "multipart_chunksize": whole_number(MIN_PART_SIZE),
            "connect_timeout": positive_number,
            "read_timeout": positive_number,
            "max_attempts": whole_number(1),
            "retry_mode": _one_of(*RETRY_MODES),
            "restore_days": whole_number(1),
            "restore_tier": _one_of(*RESTORE_TIERS),
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
        connect_timeout: float = 5,
        read_timeout: float = 60,
        max_attempts: int = 5,
        retry_mode: str = "standard",
        restore_days: int | None = None,
        restore_tier: str = "Standard",
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
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            retry_mode=retry_mode,
            restore_days=restore_days,
            restore_tier=restore_tier,
        )
        if prefix and (prefix.startswith("/") or "//" in prefix):
            raise ConfigError(f"S3Store prefix {prefix!r} must be a relative key prefix")
        import boto3.exceptions
        import botocore.exceptions
        from botocore.config import Config
        from botocore.httpchecksum import StreamingChecksumBody

        self.bucketname = bucketname
        self.prefix = prefix
        self.profile = s3_profile
        self.multipart_threshold = multipart_threshold
        self.multipart_chunksize = multipart_chunksize
        self.restore_days = restore_days
        self.restore_tier = restore_tier
        self._checksums = checksums
        self._unverified_lock = threading.Lock()
        self.unverified_reads = 0
        """Reads whose bytes no checksum or ETag covered: ranges, SSE-KMS or SSE-C objects
        written without a whole-object checksum."""
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
        self._checked_body = StreamingChecksumBody  # a body botocore checks as it is read
        checksum_mode = "when_supported" if checksums else "when_required"
        config = Config(
            # botocore's `max_attempts` counts retries only; `total_max_attempts` all.
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
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

    def __repr__(self) -> str:
        return (
            f"S3Store(bucketname={self.bucketname!r}, prefix={self.prefix!r}, "
            f"s3_profile={self.profile!r}, s3_region={self.region!r}, "
            f"endpoint_url={self.endpoint_url!r})"
        )

    def close(self) -> None:
        self._client.close()

    def location(self) -> tuple[str, str]:
        """The bucket on its endpoint (AWS's regional endpoints are one), and the prefix."""
        host = urlsplit(self.endpoint_url).netloc.lower()
        endpoint = "AWS" if host.endswith(".amazonaws.com") else host
        return (f"S3 bucket {self.bucketname} at {endpoint}", self.prefix)

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
            code = exc.response.get("Error", {}).get("Code")
            if code in _MISSING_CODES:
                raise KeyNotFoundError(key, self._where()) from None
            if code == _ARCHIVED_CODE and key:
                raise self._archived(key) from None
            raise RemoteError(f"{self._where(key)}: {self._clean(exc)}") from None
        except self._errors as exc:
            raise RemoteError(f"{self._where(key)}: {self._clean(exc)}") from None

    # -- archived objects -------------------------------------------------------------------

    def restore_state(self, key: str) -> RestoreState:
        """One HEAD: the object's storage class and how far its restore has come."""
        key = validate_key(key)
        with self._calling(key):
            head = self._client.head_object(Bucket=self.bucketname, Key=self._name(key))
        storage = head.get("StorageClass") or "STANDARD"
        tier = head.get("ArchiveStatus")  # Intelligent-Tiering's archive tiers
        named = f"{storage} ({tier})" if tier else storage
        restore = head.get("Restore") or ""
        if 'ongoing-request="true"' in restore:
            return RestoreState(key, named, "in progress")
        if 'ongoing-request="false"' in restore:
            expiry = _RESTORE_EXPIRY.search(restore)
            return RestoreState(key, named, "done", expiry.group(1) if expiry else None)
        archived = storage in _ARCHIVE_CLASSES or bool(tier)
        return RestoreState(key, named, "none" if archived else "readable")

    def request_restore(
        self, key: str, *, days: int | None = None, tier: str | None = None
    ) -> RestoreState:
        """Ask S3 to restore an archived object, unless it is readable or being restored.

        A HEAD first, so a restore in progress is not asked for again; two processes that
        ask at once get one restore, as S3 answers the second RestoreAlreadyInProgress.
        `days` and `tier` default to the store's `restore_days` (else 1) and `restore_tier`.
        """
        key = validate_key(key)
        days = days if days is not None else self.restore_days or 1
        tier = tier if tier is not None else self.restore_tier
        self.check_arguments(restore_days=days, restore_tier=tier)
        state = self.restore_state(key)
        if state.state != "none":
            return state
        request: dict[str, Any] = {"GlacierJobParameters": {"Tier": tier}}
        if "(" not in state.storage_class:  # an Intelligent-Tiering restore takes no days
            request["Days"] = days
        try:
            response = self._client.restore_object(
                Bucket=self.bucketname, Key=self._name(key), RestoreRequest=request
            )
        except self._errors as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code == "RestoreAlreadyInProgress":  # another process asked first
                return state._replace(state="in progress")
            raise RemoteError(f"{self._where(key)}: restoring failed: {self._clean(exc)}") from None
        # 202: S3 accepted the restore; 200: a restored copy exists already.
        accepted = response["ResponseMetadata"]["HTTPStatusCode"] == 202
        return state._replace(state="requested" if accepted else "done")

    def _archived(self, key: str) -> ObjectArchivedError:
        """The error for a read S3 refused because the object is archived; with
        `restore_days` set, a restore is asked for first."""
        try:
            if self.restore_days is not None:
                state = self.request_restore(key)
            else:
                state = self.restore_state(key)
        except KeyNotFoundError:
            raise
        except RemoteError as exc:  # the object is archived, whatever the HEAD or restore met
            return ObjectArchivedError(
                key, "an archive storage class", "none", where=self._where(key), hint=str(exc)
            )
        hints = {
            "none": f"set restore_days to have reads restore it, or run: csf restore {key}",
            "requested": f"S3 restores it for {self.restore_days} day(s) ({self.restore_tier} "
            f"tier: hours); run 'csf restore {key} --wait' to wait for it",
            "in progress": f"read it once it is done; run 'csf restore {key} --wait' to wait",
        }
        restore = "done" if state.readable else state.state  # restored since the GET
        return ObjectArchivedError(
            key,
            state.storage_class,
            restore,
            where=self._where(key),
            expiry=state.expiry,
            hint=hints.get(restore, "read it again"),
        )

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
        """One GET with IfNoneMatch: None on S3's 304 (no body sent), else the new version.

        An archived object can't be read, but it can be revalidated: a HEAD that finds the
        same ETag keeps the local copy in use, with no restore.
        """
        with self._calling(key):
            try:
                response = self._client.get_object(
                    Bucket=self.bucketname, Key=self._name(key), IfNoneMatch=etag
                )
            except self._client_error as exc:
                code = exc.response.get("Error", {}).get("Code")
                if code in _NOT_MODIFIED_CODES:
                    return None
                if code == _ARCHIVED_CODE and self._s3_etag(key) == etag:
                    return None
                raise
        return self._reader(key, response)

    def _reader(self, key: str, response: dict[str, Any]) -> EntryReader:
        body = _Body(self, key, response, digest=self._etag_digest(key, response))
        return EntryReader(io.BufferedReader(body, _READ_BUFFER), self._stat(response))

    def _etag_digest(self, key: str, response: dict[str, Any]) -> _ETagDigest | None:
        """What a whole-object read checks its bytes against, where botocore checks nothing.

        botocore checks a whole-object checksum (a single PUT's, a FULL_OBJECT multipart's);
        a composite one (other writers' multipart uploads) it cannot.  Then the ETag is
        checked where it is made of MD5s (not under SSE-KMS or SSE-C): one HEAD per part
        learns a multipart object's part sizes.  A read nothing covers is counted.
        """
        if isinstance(response["Body"], self._checked_body):
            return None
        etag: str = response.get("ETag") or ""
        md5, _, parts = etag.strip('"').partition("-")
        encrypted = (
            response.get("ServerSideEncryption") in _NOT_MD5_ENCRYPTION
            or "SSECustomerAlgorithm" in response
        )
        if encrypted or not re.fullmatch(r"[0-9a-f]{32}", md5):
            self._count_unverified()
            return None
        if not parts:
            return _ETagDigest(etag, [])
        if not parts.isdigit() or not 0 < int(parts) <= _MAX_PARTS:
            self._count_unverified()
            return None
        return _ETagDigest(etag, self._part_sizes(key, int(parts), response["ContentLength"]))

    def _part_sizes(self, key: str, count: int, total: int) -> list[int]:
        sizes = []
        for number in range(1, count + 1):
            with self._calling(key):
                head = self._client.head_object(
                    Bucket=self.bucketname, Key=self._name(key), PartNumber=number
                )
            sizes.append(head["ContentLength"])
        if sum(sizes) != total:
            raise RemoteError(f"{self._where(key)}: the object changed while it was opened")
        return sizes

    def _count_unverified(self) -> None:
        with self._unverified_lock:
            self.unverified_reads += 1

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
        self._count_unverified()  # S3 sends no checksum for a range
        body = _Body(self, key, response, start)
        return EntryReader(io.BufferedReader(body, _READ_BUFFER), stat)

    def _s3_etag(self, key: str) -> str | None:
        """The object's own ETag (not the origin's a cache bucket keeps), from one HEAD."""
        with self._calling(key):
            etag: str | None = self._client.head_object(
                Bucket=self.bucketname, Key=self._name(key)
            ).get("ETag")
        return etag

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

        The stat's ETag is the one the PUT or the completing request returned: a HEAD
        afterwards could see another writer's version.  `etag`, the origin's entity tag when
        this bucket caches another store, is kept in the object's metadata and reported by
        `stat`.
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
                size = len(head)
            else:
                if seekable:
                    stream.seek(start)
                    source: IO[bytes] = stream
                else:
                    source = io.BufferedReader(_Chained(head, stream), MiB)
                del head  # the parts are read from `source`; don't hold this copy meanwhile
                response, size = self._upload_parts(name, source, extra)
        return EntryStat(size=size, modified=time.time(), etag=etag or response["ETag"])

    def _upload_parts(
        self, name: str, source: IO[bytes], extra: dict[str, Any]
    ) -> tuple[dict[str, Any], int]:
        """A multipart upload whose whole-object CRC32 S3 checks and keeps (FULL_OBJECT).

        A few parts are in flight at once, each read only when a slot is free, so memory
        holds at most that many parts.  Once the interpreter is shutting down, thread pools
        refuse new work: an upload that still runs then (a handle committed at exit) sends
        its parts one by one.  A failed upload is aborted, leaving no parts to pay for.
        """
        checksum = {"ChecksumAlgorithm": "CRC32", "ChecksumType": "FULL_OBJECT"}
        created = self._client.create_multipart_upload(
            Bucket=self.bucketname, Key=name, **(checksum if self._checksums else {}), **extra
        )
        upload = {"Bucket": self.bucketname, "Key": name, "UploadId": created["UploadId"]}
        try:
            with contextlib.ExitStack() as stack:
                submit: _Submit = _run_now
                if threading.main_thread().is_alive():
                    submit = stack.enter_context(ThreadPoolExecutor(_PARTS_IN_FLIGHT)).submit
                parts, crc, size = self._send_parts(upload, source, submit)
            whole = {
                "ChecksumCRC32": _crc32_text(crc),
                "ChecksumType": "FULL_OBJECT",
                "MpuObjectSize": size,
            }
            response = self._client.complete_multipart_upload(
                **upload, MultipartUpload={"Parts": parts}, **(whole if self._checksums else {})
            )
        except BaseException:
            with contextlib.suppress(*self._errors):
                self._client.abort_multipart_upload(**upload)
            raise
        return response, size

    def _send_parts(
        self, upload: dict[str, Any], source: IO[bytes], submit: _Submit
    ) -> tuple[list[dict[str, Any]], int, int]:
        """Upload `source` in parts; their list, the whole object's CRC32 and its size."""
        in_flight: collections.deque[Future[Any]] = collections.deque()
        parts: list[dict[str, Any]] = []
        crc = size = 0
        for number in itertools.count(1):
            chunk = _read_up_to(source, self.multipart_chunksize)
            if not chunk and number > 1:
                break
            if number > _MAX_PARTS:
                raise RemoteError(
                    f"{self._where(upload['Key'])}: over {_MAX_PARTS} parts; "
                    "raise multipart_chunksize"
                )
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            sent = {"ChecksumCRC32": _crc32_text(zlib.crc32(chunk))} if self._checksums else {}
            in_flight.append(
                submit(self._client.upload_part, **upload, PartNumber=number, Body=chunk, **sent)
            )
            del chunk
            while len(in_flight) >= _PARTS_IN_FLIGHT:
                parts.append(self._part(len(parts) + 1, in_flight.popleft().result()))
        parts.extend(self._part(len(parts) + 1, future.result()) for future in in_flight)
        return parts, crc, size

    def _part(self, number: int, response: dict[str, Any]) -> dict[str, Any]:
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if self._checksums and response.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        return part

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
