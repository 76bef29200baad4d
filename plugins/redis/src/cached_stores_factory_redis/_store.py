"""RedisStore: entries as Redis hashes, fetched with their metadata in one round trip.

Each entry is one hash at `<prefix><key>` with two fields: `d` (the bytes) and `m` (JSON
metadata: size, stored time, digest, etag).  A hit is one HMGET; a write is one MULTI/EXEC
transaction (HSET both fields, then PEXPIRE or PERSIST), so readers see the old entry or the
new one and never an entry without its expiry.  Listing uses SCAN (never KEYS, which blocks
the server) restricted to hashes under the prefix.

With `cluster=True` the same layout runs on Redis Cluster through redis-py's RedisCluster:
an entry is one key, so its data and metadata share a hash slot and a hit stays one round
trip to the node that owns it; listing scans every primary.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import time
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from cached_stores_factory import EntryReader, EntryStat, Store, validate_key
from cached_stores_factory.errors import (
    ConfigError,
    InvalidKeyError,
    KeyNotFoundError,
    StoreError,
    redact,
)

__all__ = ["DEFAULT_MAX_VALUE_BYTES", "RedisStore", "connect"]

DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024
"""Values above this are refused: a large value blocks the single-threaded server while it
moves, and Redis refuses bulk strings over 512 MB anyway."""

_CHUNK = 1024 * 1024
_DATA = b"d"
_META = b"m"

# Pinned client settings; redis-py's defaults have changed between releases.  A store is a
# cache tier, so it fails fast: 2 s to connect, 5 s per command, three retries with jittered
# exponential backoff (50 ms doubling up to 1 s) on connection errors and timeouts, which is
# safe because every command this store sends is idempotent.
_CONNECT_TIMEOUT = 2.0
_COMMAND_TIMEOUT = 5.0
_RETRIES = 3
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0
_HEALTH_CHECK_INTERVAL = 30


def connect(
    *,
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    password: str | None = None,
    url: str | None = None,
    cluster: bool = False,
    **kwargs: Any,
) -> Any:
    """A redis-py client (`Redis`, or `RedisCluster` when `cluster`) with the pinned settings.

    `url` wins over host, port, db and password.  `kwargs` go to redis-py and override the
    pinned timeouts and retries.  A cluster has only db 0.  Returns Any: redis-py's
    annotations mix its sync and async return types.
    """
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    retry = Retry(ExponentialWithJitterBackoff(_BACKOFF_CAP, _BACKOFF_BASE), _RETRIES)
    options: dict[str, Any] = {
        "socket_connect_timeout": _CONNECT_TIMEOUT,
        "socket_timeout": _COMMAND_TIMEOUT,
        "health_check_interval": _HEALTH_CHECK_INTERVAL,
    }
    if not cluster:
        options.update(retry=retry, retry_on_error=[redis.ConnectionError, redis.TimeoutError])
        options.update(kwargs)
        if url is not None:
            return redis.Redis.from_url(url, **options)
        return redis.Redis(host=host, port=port, db=db, password=password, **options)
    if db != 0 or (url is not None and urlsplit(url).path.strip("/") not in ("", "0")):
        raise ConfigError("Redis Cluster has only db 0: leave db unset and the URL without one")
    # The cluster client retries itself (following MOVED and ASK too): it takes `retry` as
    # its own argument and refuses it among the nodes' connection options.
    options.update(retry=retry)
    options.update(kwargs)
    try:
        if url is not None:
            return redis.RedisCluster.from_url(url, **options)
        return redis.RedisCluster(host=host, port=port, password=password, **options)
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        parts = urlsplit(url) if url is not None else None
        address = f"{parts.hostname}:{parts.port}" if parts is not None else f"{host}:{port}"
        secrets = (password, url, parts.password if parts is not None else None)
        message = redact(f"{type(exc).__name__}: {exc}", secrets)
        raise StoreError(f"Redis Cluster at {address}: {message}") from None


def _glob_escape(text: bytes) -> bytes:
    """Escape SCAN MATCH's pattern characters, so a prefix matches only itself."""
    for char in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(char, b"\\" + char)
    return text


class RedisStore(Store):
    """Entries in Redis under `prefix`, each expiring after `ex` seconds when given.

    Connect with `host`/`port`/`db`/`password`, or with a `url` (redis://, rediss://,
    unix://), which wins when given.  `cluster=True` speaks to a Redis Cluster through any of
    its nodes.  Other keyword arguments go to redis-py (`ssl_ca_certs` for TLS, for example)
    and override the pinned timeouts and retries.  Several caches share a server by using
    different prefixes, none of which may begin another.  `max_value_bytes` bounds one entry.
    """

    def __init__(  # noqa: PLR0917 - the seed's positional order: host, port, ex
        self,
        host: str = "localhost",
        port: int = 6379,
        ex: float | None = None,
        db: int = 0,
        password: str | None = None,
        url: str | None = None,
        prefix: str = "csf:",
        *,
        cluster: bool = False,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        **kwargs: Any,
    ) -> None:
        if ex is not None and not ex > 0:
            raise ConfigError(f"RedisStore ex must be a positive number of seconds, not {ex!r}")
        if not isinstance(prefix, str):
            raise ConfigError(f"RedisStore prefix must be a str, not {type(prefix).__name__}")
        import redis

        self.cluster = cluster
        self._client: Any = connect(
            host=host, port=port, db=db, password=password, url=url, cluster=cluster, **kwargs
        )
        if cluster:  # named by the node it was reached through
            parts = urlsplit(url) if url is not None else None
            self.host: str = parts.hostname or host if parts is not None else host
            self.port: int | None = parts.port or port if parts is not None else port
            self.db: int = 0
            connection = self._client.nodes_manager.connection_kwargs
        else:
            connection = self._client.connection_pool.connection_kwargs
            self.host = connection.get("host", connection.get("path", host))
            self.port = connection.get("port")
            self.db = connection.get("db", db)
        self.ex = ex
        self.prefix = prefix
        self.max_value_bytes = max_value_bytes
        self._prefix = prefix.encode("utf-8")
        self._secrets = (password, connection.get("password"), url)
        self._errors = (redis.RedisError, redis.exceptions.RedisClusterException)

    @property
    def redis_client(self) -> Any:
        """The redis-py client (`Redis` or `RedisCluster`): policies keep shared state there."""
        return self._client

    @property
    def native_expiry(self) -> float | None:  # type: ignore[override]
        """Redis drops every entry `ex` seconds after it was stored."""
        return self.ex

    @property
    def where(self) -> str:
        """host:port (or the socket path) and db, for messages: never credentials."""
        address = self.host if self.port is None else f"{self.host}:{self.port}"
        if self.cluster:
            return f"Redis Cluster at {address}"
        return f"Redis at {address} db {self.db}"

    def __repr__(self) -> str:
        return (
            f"RedisStore(host={self.host!r}, port={self.port!r}, db={self.db!r}, "
            f"prefix={self.prefix!r}, ex={self.ex!r}" + (", cluster=True)" if self.cluster else ")")
        )

    @contextlib.contextmanager
    def _talking(self) -> Iterator[None]:
        """Turn redis-py's errors into StoreError naming the server, never a password."""
        try:
            yield
        except self._errors as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            raise StoreError(f"{self.where}: {message}") from None

    def _name(self, key: str) -> bytes:
        return self._prefix + key.encode("utf-8")

    def close(self) -> None:
        self._client.close()

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _stat(meta: bytes) -> EntryStat:
        # An entry's metadata repeats byte for byte on every hit until the entry is rewritten,
        # and EntryStat is frozen: parse each version once (the JSON decode was ~12% of a hit).
        fields = json.loads(meta)
        return EntryStat(
            size=fields["size"],
            modified=fields["stored"],
            etag=fields.get("etag"),
            digest=fields.get("digest"),
        )

    def open_read(self, key: str) -> EntryReader:
        """One round trip: HMGET of the data and the metadata together."""
        with self._talking():
            data, meta = self._client.hmget(self._name(key), [_DATA, _META])
        if data is None or meta is None:
            raise KeyNotFoundError(key, self.where)
        return EntryReader(io.BytesIO(data), self._stat(meta))

    def get(self, key: str) -> bytes:
        with self._talking():
            data: bytes | None = self._client.hget(self._name(key), _DATA)
        if data is None:
            raise KeyNotFoundError(key, self.where)
        return data

    def stat(self, key: str) -> EntryStat:
        with self._talking():
            meta: bytes | None = self._client.hget(self._name(key), _META)
        if meta is None:
            raise KeyNotFoundError(key, self.where)
        return self._stat(meta)

    def __contains__(self, key: object) -> bool:
        with self._talking():
            return bool(self._client.exists(self._name(key)))  # type: ignore[arg-type]

    def keys(self, prefix: str = "") -> Iterator[str]:
        """SCAN for hashes under the prefix (on every primary of a cluster); repeats are dropped."""
        pattern = _glob_escape(self._name(prefix) if prefix else self._prefix) + b"*"
        seen: set[str] = set()
        with self._talking():
            for name in self._client.scan_iter(match=pattern, count=1000, _type="HASH"):
                try:
                    key = validate_key(name[len(self._prefix) :].decode("utf-8"))
                except (UnicodeDecodeError, InvalidKeyError):
                    continue  # not one of ours
                if key not in seen:
                    seen.add(key)
                    yield key

    # -- writing ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        self._store(key, memoryview(data).cast("B"), None)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        """Read `stream` (refusing it past `max_value_bytes`), then store it in one transaction."""
        buffer = bytearray()
        while chunk := stream.read(_CHUNK):
            buffer += chunk
            self._check_size(key, len(buffer))
        return self._store(key, memoryview(buffer), etag)

    def _check_size(self, key: str, size: int) -> None:
        if size > self.max_value_bytes:
            raise StoreError(
                f"{self.where}: refusing to store {key!r}: more than max_value_bytes="
                f"{self.max_value_bytes} bytes; raise the limit or keep larger objects out "
                "of this store (a policy's byte limit does that for a cache)"
            )

    def _store(self, key: str, data: memoryview, etag: str | None) -> EntryStat:
        """One transaction; `data` is a view, so redis-py sends it without another copy."""
        self._check_size(key, len(data))
        stat = EntryStat(
            size=len(data),
            modified=time.time(),
            etag=etag,
            digest="sha256:" + hashlib.sha256(data).hexdigest(),
        )
        meta = json.dumps(
            {"size": stat.size, "stored": stat.modified, "etag": etag, "digest": stat.digest}
        )
        name = self._name(key)
        with self._talking(), self._client.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping={_DATA: data, _META: meta})
            if self.ex is None:
                pipe.persist(name)
            else:
                pipe.pexpire(name, max(1, round(self.ex * 1000)))
            pipe.execute()
        return stat

    def delete(self, key: str) -> bool:
        with self._talking():
            return bool(self._client.delete(self._name(key)))
