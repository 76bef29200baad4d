"""RedisStore: entries as Redis hashes, fetched with their metadata in one round trip.

Each entry is one hash at `<prefix><key>` with two fields: `d` (the bytes) and `m` (JSON
metadata: size, stored time, digest, etag).  A hit is one HMGET; a write is one MULTI/EXEC
transaction (HSET both fields, then PEXPIRE or PERSIST), so readers see the old entry or the
new one and never an entry without its expiry.  Listing uses SCAN (never KEYS, which blocks
the server) restricted to hashes under the prefix.

With `cluster=True` the same layout runs on Redis Cluster through redis-py's RedisCluster:
an entry is one key, so its data and metadata share a hash slot and a hit stays one round
trip to the node that owns it; listing scans every primary.

Fences: a key's fence is a string at `csf-fence:{<tag>}<prefix><key>`, where the hash tag
puts it in its entry's slot, so one Lua script checks or moves the fence and writes or drops
the entry atomically, on a cluster too.  Its value is a random token, `~<token>` while the
key changes (set with PX `hold`, so the mark lapses by itself).  A clean fence lives a day
after it was last read: a fence lost (expired, or a server restarted empty) only makes the
fetches that took it store nothing, since no later token equals an earlier one.  It is a
string, so `keys()`, which lists hashes only, never shows it.  A token handed out also
names the prefix's clear epoch (`csf-epoch:<prefix>`, on a cluster one per hash slot), which
`move_fences` sets anew for a cache's `clear()`.

Integrity: the metadata records the value's XXH3-64 checksum, and every read of the value
checks it (a small part of a hit: docs/performance.md).  A value that changed behind the
cache, or metadata that is not what this store writes (bad JSON, a missing field, bytes that
are not UTF-8, an entry of an older layout), raises CorruptEntryError, never a raw
KeyError or UnicodeDecodeError.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import json
import secrets
import time
from collections.abc import Iterator
from types import MappingProxyType
from typing import IO, Any
from urllib.parse import urlsplit

import xxhash

from cached_stores_factory import (
    BytesReader,
    EntryReader,
    EntryStat,
    Store,
    positive_number,
    validate_key,
    whole_number,
)
from cached_stores_factory.errors import (
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    KeyNotFoundError,
    StoreError,
    redact,
)

from ._lease import DEFAULT_LEASE_SECONDS, RedisLease

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_VALUE_BYTES",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT",
    "RedisStore",
    "connect",
]

DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024
"""Values above this are refused: a large value blocks the single-threaded server while it
moves, and Redis refuses bulk strings over 512 MB anyway."""

_CHUNK = 1024 * 1024
_DATA = b"d"
_META = b"m"

# Pinned client settings; redis-py's defaults have changed between releases.  A store is a
# cache tier, so it fails fast: the remote can always answer instead.  0.25 s to connect and
# 0.25 s for each socket read or write, and one retry after 10-50 ms (jittered) on a
# connection error or a timeout, which is safe because every command this store sends is
# idempotent.  The retry rides over a server restart (a pooled connection that died).  A
# hung server (SIGSTOP) costs a call on a pooled connection about 0.5 s and one that must
# connect about 1 s: redis-py retries the connection's handshake inside the command's retry.
DEFAULT_SOCKET_TIMEOUT = 0.25
DEFAULT_CONNECT_TIMEOUT = 0.25
DEFAULT_RETRIES = 1
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 0.05
_HEALTH_CHECK_INTERVAL = 30
_CHECKSUM = "xxh3-64:"
_META_FIELDS = ("size", "stored", "etag", "digest")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})  # one server, named three ways
_FENCE_PREFIX = b"csf-fence:"
_FENCE_LIFETIME_MS = 24 * 3600 * 1000

_EPOCH_PREFIX = b"csf-epoch:"
_SLOTS = 16384

# A fence is a hash: `t` its token; while changes of the key run, `n` how many, `r` their
# run, `c` 1 once two overlapped.  A clean fence lives a day, refreshed when read; a marked
# one lapses `hold` after its last change began (then it is gone, and a new one is made).
# A token handed out is the fence's `t`, a '/', and the clear epoch of the fence's slot (a
# string: random, set anew by `move_fences`).  The epoch is always the last of KEYS.

# Where a script reads the epoch to hand it out: made from `new` if missing (expired, evicted,
# lost in a restart), so a lost epoch is never read as one handed out before.
_EPOCH = """
local function epoch(new, lifetime)
  local value = redis.call('GET', KEYS[#KEYS]) or new
  redis.call('SET', KEYS[#KEYS], value, 'PX', lifetime)
  return value
end
"""
# KEYS: fence, epoch.  ARGV: a new token, the fence's lifetime (ms).  The fence's token, made
# if missing and kept alive a while longer, with the epoch; nil while the key is marked
# changing.
_FENCE_SCRIPT = (
    _EPOCH
    + """
local token = redis.call('HGET', KEYS[1], 't')
if not token then
  token = ARGV[1]
  redis.call('HSET', KEYS[1], 't', token, 'n', 0)
elseif tonumber(redis.call('HGET', KEYS[1], 'n') or '0') > 0 then
  return false
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token .. '/' .. epoch(ARGV[1], ARGV[2])
"""
)
# KEYS: fence, entry, epoch.  ARGV: token, data, metadata, expiry (ms, 0 for none).  Writes
# the entry as `_store` does, only if the fence and the epoch are still the token's and the
# key is unmarked; 1 if it did.
_PUT_FENCED_SCRIPT = """
local token = redis.call('HGET', KEYS[1], 't')
if not token or token .. '/' .. (redis.call('GET', KEYS[3]) or '') ~= ARGV[1] then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], 'n') or '0') > 0 then return 0 end
redis.call('HSET', KEYS[2], 'd', ARGV[2], 'm', ARGV[3])
if ARGV[4] == '0' then
  redis.call('PERSIST', KEYS[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return 1
"""
# KEYS: fence, entry, epoch.  ARGV: a new token, a new run, the hold (ms), the fence's
# lifetime (ms).  Marks the key changing and drops the entry: {entries dropped, the run this
# change belongs to, the epoch it began in}.
_BEGIN_CHANGE_SCRIPT = (
    _EPOCH
    + """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local run = ARGV[2]
if n > 0 then
  run = redis.call('HGET', KEYS[1], 'r')
  redis.call('HSET', KEYS[1], 'c', 1)
else
  redis.call('HSET', KEYS[1], 'r', run, 'c', 0)
end
redis.call('HSET', KEYS[1], 't', ARGV[1], 'n', n + 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {redis.call('DEL', KEYS[2]), run, epoch(ARGV[1], ARGV[4])}
"""
)
# KEYS: fence, entry, epoch.  ARGV: a new token, the fence's lifetime (ms), the change's run,
# the epoch it began in.  Drops the entry, moves the token and ends one change: the token if
# the changer may store its copy, nil if others still run, two overlapped, the epoch moved
# since the change began (a clear ran meanwhile), or the run lapsed or was lost (an end from
# a lapsed run overlapped the run going now: that one stores nothing either).
_END_CHANGE_SCRIPT = (
    _EPOCH
    + """
redis.call('DEL', KEYS[2])
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
redis.call('HSET', KEYS[1], 't', ARGV[1])
if n == 0 then
  redis.call('HSET', KEYS[1], 'n', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return false
end
if redis.call('HGET', KEYS[1], 'r') ~= ARGV[3] then
  redis.call('HSET', KEYS[1], 'c', 1)
  return false
end
redis.call('HSET', KEYS[1], 'n', n - 1)
if n > 1 then return false end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[1], 'c') == '1' then return false end
local current = epoch(ARGV[1], ARGV[2])
if current ~= ARGV[4] then return false end
return ARGV[1] .. '/' .. current
"""
)


def _checksum(data: bytes | memoryview) -> str:
    return _CHECKSUM + xxhash.xxh3_64_hexdigest(data)


def connect(
    *,
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    password: str | None = None,
    url: str | None = None,
    cluster: bool = False,
    socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    **kwargs: Any,
) -> Any:
    """A redis-py client (`Redis`, or `RedisCluster` when `cluster`) with the pinned settings.

    `url` wins over host, port, db and password.  `socket_timeout`, `socket_connect_timeout`
    and `retries` bound one call's stall on a dead or hung server.  `kwargs` go to redis-py
    and override the pinned settings (a `retry` there wins over `retries`).  A cluster has
    only db 0.  Returns Any: redis-py's annotations mix its sync and async return types.
    """
    RedisStore.check_arguments(
        port=port,
        db=db,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_connect_timeout,
        retries=retries,
    )
    import redis
    from redis.backoff import ExponentialWithJitterBackoff
    from redis.retry import Retry

    retry = Retry(ExponentialWithJitterBackoff(_BACKOFF_CAP, _BACKOFF_BASE), retries)
    options: dict[str, Any] = {
        "socket_connect_timeout": socket_connect_timeout,
        "socket_timeout": socket_timeout,
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


@functools.cache
def _crc_preimages() -> tuple[int, ...]:
    """For each bit of a CRC16, the two bytes whose CRC16 is that bit alone.

    Redis Cluster hashes keys with CRC16-XMODEM, which maps two bytes m to m * x^16 modulo
    its polynomial P: a linear bijection.  x has order 32767 modulo P, so two bytes t
    followed by 32763 zero bytes have the CRC t * x^(8 * 32763 + 16) = t * x^-16: the two
    bytes whose CRC is t.
    """
    return tuple(
        binascii.crc_hqx((1 << bit).to_bytes(2, "big") + bytes(32763), 0) for bit in range(16)
    )


@functools.lru_cache(maxsize=16384)
def _slot_tag(slot: int) -> bytes:
    """Two bytes, never a '}', that Redis Cluster hashes to `slot` when they are a key's tag.

    The slot is the CRC's low 14 bits, so four CRCs give it; one of them has no '}' (the
    tests check every slot).
    """
    for crc in (slot | high << 14 for high in range(4)):
        preimage = 0
        for bit, image in enumerate(_crc_preimages()):
            if crc >> bit & 1:
                preimage ^= image
        tag = preimage.to_bytes(2, "big")
        if b"}" not in tag:
            return tag
    raise AssertionError(f"no hash tag without '}}' for slot {slot}")  # pragma: no cover


def _glob_escape(text: bytes) -> bytes:
    """Escape SCAN MATCH's pattern characters, so a prefix matches only itself."""
    for char in (b"\\", b"*", b"?", b"[", b"]"):
        text = text.replace(char, b"\\" + char)
    return text


class RedisStore(Store):
    """Entries in Redis under `prefix`, each expiring after `ex` seconds when given.

    Several caches share a server by using different prefixes, none of which may begin
    another.  The timeouts and `retries` bound how long one call can stall on a dead or hung
    server.  Fences hold for every process that uses the same prefix (`fences_shared`).

    Args:
        host: The server's host name or address.
        port: The server's port.
        ex: Seconds Redis keeps each entry (native expiry); None keeps entries until they
            are deleted or Redis evicts them.
        db: The database number.
        password: The server's password.  Never shown in reprs, logs or errors.
        url: A `redis://`, `rediss://` or `unix://` URL, which wins over `host`, `port`, `db`
            and `password` when given.
        prefix: Prepended to every Redis key.
        cluster: True: a Redis Cluster, reached through `host`/`port` or `url` of any node
            (database 0 only).
        max_value_bytes: The largest entry stored; a larger one is refused with a clear error.
        socket_timeout: Seconds for each socket read or write.
        socket_connect_timeout: Seconds to connect.
        retries: Retries after a connection error or a timeout (every command is idempotent).
        lease_timeout: Seconds a per-key lease (held around a fetch, renewed while held)
            outlives a holder that died or stopped.
        **kwargs: Passed to `redis.Redis` or `redis.RedisCluster` (`ssl_ca_certs` for
            TLS, for example), over the pinned settings: a `retry` there wins over `retries`.
    """

    fences_shared = True
    argument_checks = MappingProxyType(
        {
            "port": whole_number(1, 65535),
            "db": whole_number(0),
            "ex": positive_number,
            "max_value_bytes": whole_number(1),
            "socket_timeout": positive_number,
            "socket_connect_timeout": positive_number,
            "retries": whole_number(0),
            "lease_timeout": positive_number,
        }
    )

    def __init__(  # noqa: PLR0917 - the original examples' order: host, port, ex
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
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        lease_timeout: float = DEFAULT_LEASE_SECONDS,
        **kwargs: Any,
    ) -> None:
        self.check_arguments(ex=ex, lease_timeout=lease_timeout, max_value_bytes=max_value_bytes)
        if not isinstance(prefix, str):
            raise ConfigError(f"RedisStore prefix must be a str, not {type(prefix).__name__}")
        import redis

        self.cluster = cluster
        self._client: Any = connect(
            host=host,
            port=port,
            db=db,
            password=password,
            url=url,
            cluster=cluster,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            retries=retries,
            **kwargs,
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
        self.lease_timeout = lease_timeout
        self.max_value_bytes = max_value_bytes
        self._prefix = prefix.encode("utf-8")
        self._secrets = (password, connection.get("password"), url)
        self._errors = (redis.RedisError, redis.exceptions.RedisClusterException)
        self._fence_script = self._client.register_script(_FENCE_SCRIPT)
        self._put_fenced_script = self._client.register_script(_PUT_FENCED_SCRIPT)
        self._begin_change_script = self._client.register_script(_BEGIN_CHANGE_SCRIPT)
        self._end_change_script = self._client.register_script(_END_CHANGE_SCRIPT)

    def lease(self, key: str) -> RedisLease:
        """A lease on `key` in this Redis, for every process that uses the same prefix.

        Held by the engine around a fetch of the key; renewed while held, it expires
        `lease_timeout` seconds after a holder died or stopped.
        """
        return RedisLease(
            self._client,
            f"csf-lease:{self.prefix}{key}",
            timeout=self.lease_timeout,
            where=self.where,
        )

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

    def location(self) -> tuple[str, str]:
        """The server and database, and the key prefix: names under it are this store's."""
        host = "localhost" if self.host in _LOOPBACK else self.host
        address = host if self.port is None else f"{host}:{self.port}"
        kind = "Redis Cluster" if self.cluster else "Redis"
        return (f"{kind} at {address} db {self.db}", self.prefix)

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
    def _parse(meta: bytes) -> EntryStat | None:
        """The metadata as this store writes it, or None if it is anything else.

        An entry's metadata repeats byte for byte on every hit until the entry is rewritten,
        and EntryStat is frozen: parse each version once (the JSON decode was ~12% of a hit).
        """
        try:
            fields = json.loads(meta)
            size, stored, etag, digest = (fields[name] for name in _META_FIELDS)
        except (ValueError, TypeError, KeyError):  # UnicodeDecodeError is a ValueError
            return None
        well_formed = (
            type(size) is int
            and size >= 0
            and isinstance(stored, int | float)
            and (etag is None or isinstance(etag, str))
            and isinstance(digest, str)
            and digest.startswith(_CHECKSUM)
        )
        return EntryStat(size, float(stored), etag, digest) if well_formed else None

    def _stat(self, key: str, meta: bytes) -> EntryStat:
        stat = self._parse(meta)
        if stat is None:
            raise self._corrupt(key, "its metadata is not what this store writes")
        return stat

    def _corrupt(self, key: str, what: str) -> CorruptEntryError:
        return CorruptEntryError(f"{self.where}: the entry for {key!r} is corrupt: {what}")

    def _verified(
        self, key: str, data: bytes | None, meta: bytes | None
    ) -> tuple[bytes, EntryStat]:
        """The value and its stat, once the value matches the checksum its metadata records."""
        if data is None or meta is None:
            raise KeyNotFoundError(key, self.where)
        stat = self._stat(key, meta)
        if len(data) != stat.size or _checksum(data) != stat.digest:
            raise self._corrupt(key, "its value does not match its checksum")
        return data, stat

    def open_read(self, key: str) -> EntryReader:
        """One round trip: HMGET of the data and the metadata together, then the check."""
        with self._talking():
            data, meta = self._client.hmget(self._name(key), [_DATA, _META])
        data, stat = self._verified(key, data, meta)
        return EntryReader(BytesReader(data), stat)

    def get(self, key: str) -> bytes:
        with self._talking():
            data, meta = self._client.hmget(self._name(key), [_DATA, _META])
        return self._verified(key, data, meta)[0]

    def stat(self, key: str) -> EntryStat:
        with self._talking():
            meta: bytes | None = self._client.hget(self._name(key), _META)
        if meta is None:
            raise KeyNotFoundError(key, self.where)
        return self._stat(key, meta)

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
        return self._store(key, self._read_whole(key, stream), etag)

    def _read_whole(self, key: str, stream: IO[bytes]) -> memoryview:
        buffer = bytearray()
        while chunk := stream.read(_CHUNK):
            buffer += chunk
            self._check_size(key, len(buffer))
        return memoryview(buffer)

    def _check_size(self, key: str, size: int) -> None:
        if size > self.max_value_bytes:
            raise StoreError(
                f"{self.where}: refusing to store {key!r}: more than max_value_bytes="
                f"{self.max_value_bytes} bytes; raise the limit or keep larger objects out "
                "of this store (a policy's byte limit does that for a cache)"
            )

    def _describe(self, key: str, data: memoryview, etag: str | None) -> tuple[EntryStat, str]:
        """The entry's stat and the metadata that records it."""
        self._check_size(key, len(data))
        stat = EntryStat(size=len(data), modified=time.time(), etag=etag, digest=_checksum(data))
        meta = json.dumps(
            {"size": stat.size, "stored": stat.modified, "etag": etag, "digest": stat.digest}
        )
        return stat, meta

    def _store(self, key: str, data: memoryview, etag: str | None) -> EntryStat:
        """One transaction; `data` is a view, so redis-py sends it without another copy."""
        stat, meta = self._describe(key, data, etag)
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

    # -- fences: see the module's docstring ---------------------------------------------------

    def _fence_name(self, key: str) -> bytes:
        """The fence's key: tagged with its entry's hash slot, so scripts may touch both."""
        return self._fence_keys(key)[0]

    def _fence_keys(self, key: str) -> tuple[bytes, bytes, bytes]:
        """The key's fence, entry and clear epoch, all in the entry's hash slot."""
        import redis.crc

        name = self._name(key)
        tag = _slot_tag(redis.crc.key_slot(name))
        return _FENCE_PREFIX + b"{" + tag + b"}" + name, name, self._epoch_name(tag)

    def _epoch_name(self, tag: bytes) -> bytes:
        """The prefix's clear epoch: on a cluster, one per hash slot (the one `tag` names),
        since a script may touch the keys of one slot only."""
        return _EPOCH_PREFIX + (b"{" + tag + b"}" if self.cluster else b"") + self._prefix

    def fence(self, key: str) -> str | None:
        fence, _entry, epoch = self._fence_keys(key)
        with self._talking():
            token = self._fence_script(
                keys=[fence, epoch], args=[secrets.token_hex(16), _FENCE_LIFETIME_MS]
            )
        return None if token is None else bytes(token).decode("ascii")

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        """Read the stream, then check the fence and write the entry in one script."""
        data = self._read_whole(key, stream)
        stat, meta = self._describe(key, data, etag)
        expiry = 0 if self.ex is None else max(1, round(self.ex * 1000))
        with self._talking():
            stored = self._put_fenced_script(
                keys=self._fence_keys(key), args=[fence, data, meta, expiry]
            )
        return stat if stored else None

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        """Mark the key; the mark for `end_change` is the change's run and its epoch."""
        with self._talking():
            dropped, run, epoch = self._begin_change_script(
                keys=self._fence_keys(key),
                args=[
                    secrets.token_hex(16),
                    secrets.token_hex(8),
                    max(1, round(hold * 1000)),
                    _FENCE_LIFETIME_MS,
                ],
            )
        return dropped > 0, f"{bytes(run).decode('ascii')}/{bytes(epoch).decode('ascii')}"

    def end_change(self, key: str, mark: str) -> str | None:
        run, _, epoch = mark.partition("/")
        with self._talking():
            token = self._end_change_script(
                keys=self._fence_keys(key),
                args=[secrets.token_hex(16), _FENCE_LIFETIME_MS, run, epoch],
            )
        return None if token is None else bytes(token).decode("ascii")

    def move_fences(self) -> None:
        """Set the prefix's clear epoch anew: on a cluster, that of every hash slot.

        Each slot's epoch is set atomically against the scripts of its slot, and a cache's
        `clear` lists the copies only once every slot's is set, so a copy stored before its
        slot's epoch moved is dropped, and one after it is refused: atomic enough, slot by
        slot.  A cluster keeps up to one epoch per slot (16384 short strings per prefix).
        """
        epoch = secrets.token_hex(16)
        tags = [_slot_tag(slot) for slot in range(_SLOTS)] if self.cluster else [b""]
        with self._talking(), self._client.pipeline(transaction=False) as pipe:
            for tag in tags:
                pipe.set(self._epoch_name(tag), epoch, px=_FENCE_LIFETIME_MS)
            pipe.execute()
