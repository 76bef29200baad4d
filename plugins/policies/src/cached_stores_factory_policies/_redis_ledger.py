"""RedisLedger: a bounded cache's order, sizes and counts in Redis, shared by a fleet.

Every process and machine whose policy names the same ledger (the same Redis, the same
`ledger_key`) shares one bound.  Insert-and-evict runs as one Lua script on the server, so
no two processes ever evict on a stale count.  All of a ledger's keys carry one hash tag,
`csf-ledger:{<ledger key>}:...`, so on Redis Cluster they sit in one slot and the script
may touch them all.

The keys: `order` (a sorted set: key -> last use or insert time, oldest first), `sizes`
(a hash: key -> bytes), `meta` (a hash: `bytes`, the sum of the sizes, and `epoch`, see
below) and `stats` (a hash of the cached stores' counters summed over every process, see
`share_stats`).

Self-healing: a Redis that lost the ledger (a restart without persistence, FLUSHALL, a
failover to an empty replica) would forget entries the local store still holds, which then
never go.  So `epoch` is written when the ledger is reconciled with the local store, and
an insert finds it missing, refuses to count, and has the inserting process reconcile first
(forget vanished entries, adopt unknown ones, then insert and evict as usual).  The flusher
also looks for it every `CHECK_SECONDS`, so an idle fleet reconciles too.

LRU uses (`touch`) stay in this process's memory and are written by a background thread
every `FLUSH_SECONDS`, by the next insert or removal (in the same script call) and at
close, so a hit adds no round trip.  A use only moves a key's time forward (`ZADD XX GT`),
so a late flush never makes a key look older than another process saw it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from cached_stores_factory import Store
from cached_stores_factory.errors import StoreError, redact

from ._fleet import CounterDeltas
from ._ledger import Bounds, _store_entries

__all__ = ["FLUSH_SECONDS", "RedisLedger", "ledger_keys"]

log = logging.getLogger("cached_stores_factory.policies")

FLUSH_SECONDS = 0.1
"""How often buffered LRU uses and counters are written: short, so other processes see
recent uses, and long enough that a busy process sends one small script call per period."""

CHECK_SECONDS = 1.0
"""How often the flusher asks whether the ledger lost its data (one HEXISTS)."""

SYNC_ATTEMPTS = 3  # a reconcile that keeps finding a changed epoch gives up until the next

# Apply buffered uses: ARGV[first..] are (key, time) pairs.  A use moves a key's time
# forward only, and never brings back a key that is gone (XX).
_TOUCH = """
local function touch(order, first)
  for i = first, #ARGV, 2 do
    redis.call('ZADD', order, 'XX', 'GT', ARGV[i + 1], ARGV[i])
  end
end
"""

# Amounts are computed as `0 - x`, never `-x`: Lua writes -0 as "-0", which HINCRBY refuses.

# KEYS: order, sizes, meta.  ARGV: key, size, now, depth, max_bytes (each -1: none), then uses.
_INSERT = (
    _TOUCH
    + """
local order, sizes, meta = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HEXISTS', meta, 'epoch') == 0 then return false end  -- lost: reconcile first
touch(order, 6)
local key, size = ARGV[1], tonumber(ARGV[2])
local depth, max_bytes = tonumber(ARGV[4]), tonumber(ARGV[5])
local old = tonumber(redis.call('HGET', sizes, key) or '0')
redis.call('ZADD', order, ARGV[3], key)
redis.call('HSET', sizes, key, size)
local total = redis.call('HINCRBY', meta, 'bytes', size - old)
local count = redis.call('ZCARD', order)
local victims = {}
while (depth >= 0 and count > depth) or (max_bytes >= 0 and total > max_bytes) do
  local oldest = redis.call('ZPOPMIN', order)
  if #oldest == 0 then break end
  local victim = oldest[1]
  local victim_size = tonumber(redis.call('HGET', sizes, victim) or '0')
  redis.call('HDEL', sizes, victim)
  total = redis.call('HINCRBY', meta, 'bytes', 0 - victim_size)
  count = count - 1
  victims[#victims + 1] = victim
end
return victims
"""
)

# KEYS: order, sizes, meta.  ARGV: n, then n (key, time) pairs: each row goes only if its
# time is still the one read before the store was checked (else another process stored the
# key again meanwhile), then uses.
_REMOVE = (
    _TOUCH
    + """
local order, sizes, meta = KEYS[1], KEYS[2], KEYS[3]
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  local key = ARGV[i]
  local score = redis.call('ZSCORE', order, key)
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', order, key)
    local size = tonumber(redis.call('HGET', sizes, key) or '0')
    redis.call('HDEL', sizes, key)
    redis.call('HINCRBY', meta, 'bytes', 0 - size)
  end
end
touch(order, 2 * n + 2)
"""
)

# KEYS: order, sizes, meta.  ARGV: the epoch read before the store was listed ('' for none),
# a new epoch, then (key, size, time) triples of entries the store holds and the ledger did
# not know: added with their stored time, unless a row appeared meanwhile.  Without an epoch
# the ledger is new or lost, maybe in part: what is left goes, and the triples are every
# entry.  Nothing happens (and 0 is returned) if the epoch changed since it was read.
_ADOPT = """
local order, sizes, meta = KEYS[1], KEYS[2], KEYS[3]
local epoch = redis.call('HGET', meta, 'epoch') or ''
if epoch ~= ARGV[1] then return 0 end
if epoch == '' then
  redis.call('DEL', order, sizes, meta)
  redis.call('HSET', meta, 'epoch', ARGV[2], 'bytes', 0)
end
for i = 3, #ARGV, 3 do
  if redis.call('ZADD', order, 'NX', ARGV[i + 2], ARGV[i]) == 1 then
    redis.call('HSET', sizes, ARGV[i], ARGV[i + 1])
    redis.call('HINCRBY', meta, 'bytes', ARGV[i + 1])
  end
end
return 1
"""

# KEYS: stats, order.  ARGV: n, then n (counter, amount) pairs, then uses.
_FLUSH = (
    _TOUCH
    + """
local n = tonumber(ARGV[1])
for i = 2, 2 * n, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
touch(KEYS[2], 2 * n + 2)
"""
)


def _flush_periodically(ref: weakref.ref[RedisLedger], closed: threading.Event) -> None:
    """The flusher thread: flush every FLUSH_SECONDS, look for a lost ledger every
    CHECK_SECONDS, until the ledger closes.  It holds the ledger only between ticks, so a
    ledger (and its store) dropped without close() is collected, and the thread ends."""
    ticks_per_check = max(1, round(CHECK_SECONDS / FLUSH_SECONDS))
    tick = 0
    while not closed.wait(FLUSH_SECONDS):
        ledger = ref()
        if ledger is None:
            return
        tick += 1
        try:
            ledger.flush()
        except Exception as exc:  # no caller to raise to: log, and keep flushing
            # A client closed under the flush (the store closing) can fail inside
            # redis-py with a ValueError rather than a RedisError.
            log.warning("%s; recent uses and counts lost", exc)
        if tick % ticks_per_check == 0:
            try:
                ledger._heal_if_lost()
            except Exception as exc:
                log.warning("%s; the ledger is checked again in %s s", exc, CHECK_SECONDS)
        del ledger


def ledger_keys(ledger_key: str) -> dict[str, str]:
    """The Redis keys of one ledger, all in one hash slot."""
    return {
        part: f"csf-ledger:{{{ledger_key}}}:{part}" for part in ("order", "sizes", "meta", "stats")
    }


class RedisLedger:
    """The ledger in Redis (or Redis Cluster), shared by every process that names it.

    `client` is a redis-py client; `owned` says whether closing the ledger closes it (a
    client borrowed from a RedisStore stays open).  `where` names the server for messages.
    """

    def __init__(
        self,
        store: Store,
        bounds: Bounds,
        client: Any,
        *,
        ledger_key: str,
        where: str,
        owned: bool,
        secrets: tuple[str | None, ...] = (),
    ) -> None:
        import redis

        self._store = store
        self._bounds = bounds
        self._client = client
        self._owned = owned
        self.where = f"{where}, ledger {ledger_key!r}"
        self._secrets = secrets
        self._errors = (redis.RedisError, redis.exceptions.RedisClusterException)
        self._ledger_key = ledger_key
        keys = ledger_keys(ledger_key)
        self._entry_keys = [keys["order"], keys["sizes"], keys["meta"]]
        self._stats_key = keys["stats"]
        self._insert = client.register_script(_INSERT)
        self._remove = client.register_script(_REMOVE)
        self._adopt = client.register_script(_ADOPT)
        self._flush = client.register_script(_FLUSH)
        self._uses: dict[str, float] = {}  # key -> last use, in order of last use
        self._counts = CounterDeltas()  # this process's counters, not yet written
        self._lock = threading.Lock()  # one script call at a time takes the buffers
        self._closed = threading.Event()
        try:
            self._sync()
        except (StoreError, OSError) as exc:  # the Redis is down: the cache must still build
            log.warning("%s can't be reconciled (%s); it is at the next start", self.where, exc)
        self._flusher: threading.Thread | None = None
        self._start_flusher()
        ref = weakref.ref(self)

        def restart_in_child() -> None:  # a forked child has no flusher thread
            ledger = ref()
            if ledger is not None and not ledger._closed.is_set():
                ledger._lock = threading.Lock()  # the parent's flusher may have held it
                ledger._uses.clear()  # the parent writes its own
                ledger._counts.forget()
                ledger._start_flusher()

        os.register_at_fork(after_in_child=restart_in_child)

        def at_exit() -> None:
            ledger = ref()
            if ledger is not None:
                ledger.close()

        self._at_exit = at_exit
        atexit.register(at_exit)

    def __repr__(self) -> str:
        return f"RedisLedger({self.where})"

    def lease(self, key: str, timeout: float) -> contextlib.AbstractContextManager[object]:
        """A lease on `key` in the ledger's Redis, for processes that share the local store."""
        from cached_stores_factory_redis import RedisLease

        return RedisLease(
            self._client, f"csf-lease:{self._ledger_key}:{key}", timeout=timeout, where=self.where
        )

    # -- talking to Redis ---------------------------------------------------------------------

    @contextmanager
    def _talking(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            message = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            raise StoreError(f"policy state at {self.where}: {message}") from None

    def _take_uses(self) -> list[str]:
        """The buffered uses as script arguments; taken under the lock, so written once."""
        taken, self._uses = self._uses, {}
        uses = list(taken.items())  # one atomic copy, while touch() may still add to `taken`
        return [arg for key, used in uses for arg in (key, repr(used))]

    def _sync(self) -> None:
        """Make the ledger match the store: forget vanished entries, adopt unknown ones.

        Tried again while the epoch changes under it (the ledger lost again, or rebuilt by
        another process first, which made what this one read stale).
        """
        for _ in range(SYNC_ATTEMPTS):
            if self._reconcile():
                return
        raise StoreError(f"policy state at {self.where}: it kept changing while reconciled")

    def _reconcile(self) -> bool:
        """One attempt of `_sync`: False if the epoch changed meanwhile and nothing was adopted."""
        order, sizes, meta = self._entry_keys
        with self._talking():
            epoch = self._client.hget(meta, "epoch") or b""
        present = set(self._store.keys())
        with self._talking():
            # Without an epoch, whatever is left is not to be trusted: every entry is adopted.
            known = {key.decode() for key in self._client.hkeys(sizes)} if epoch else set()
            gone = sorted(known - present)
            times = self._client.zmscore(order, gone) if gone else []
        really_gone = [
            (key, used)
            for key, used in zip(gone, times, strict=True)
            if used is not None and key not in self._store
        ]
        adopted = _store_entries(self._store, present - known)
        triples = [arg for used, key, size in adopted for arg in (key, size, repr(used))]
        with self._talking():
            if really_gone:
                pairs = [arg for key, used in really_gone for arg in (key, repr(used))]
                self._remove(keys=self._entry_keys, args=[len(really_gone), *pairs])
            return bool(
                self._adopt(keys=self._entry_keys, args=[epoch, os.urandom(8).hex(), *triples])
            )

    def _heal_if_lost(self) -> None:
        """Reconcile if the ledger lost its data (it has no epoch)."""
        with self._talking():
            if self._client.hexists(self._entry_keys[2], "epoch"):
                return
        log.warning(
            "%s lost its data (a restart without persistence, a flush, a failover): "
            "rebuilding it from %r",
            self.where,
            self._store,
        )
        self._sync()

    # -- the Ledger protocol ------------------------------------------------------------------

    def insert(self, key: str, size: int, now: float) -> list[str]:
        depth, max_bytes = (
            -1 if bound is None else bound for bound in (self._bounds.depth, self._bounds.max_bytes)
        )
        args = [key, size, repr(now), depth, max_bytes]
        try:
            victims = self._record(args)
            if victims is None:  # the ledger lost its data
                self._heal_if_lost()
                victims = self._record(args)
            if victims is None:
                raise StoreError(f"policy state at {self.where}: lost again while reconciled")
        except (StoreError, OSError) as exc:
            # Never exceed the bound because the ledger is unreachable: drop the new copy.
            log.warning("%s; not caching %r", exc, key)
            return [key]
        return [victim.decode() for victim in victims]

    def _record(self, args: list[Any]) -> list[bytes] | None:
        """Run the insert script; None if the ledger has no epoch (it lost its data)."""
        with self._lock, self._talking():
            victims: list[bytes] | None = self._insert(
                keys=self._entry_keys, args=[*args, *self._take_uses()]
            )
            return victims

    def touch(self, key: str, now: float) -> None:
        # No lock, no I/O: a hit never waits.  The flusher thread writes it soon.
        uses = self._uses
        uses.pop(key, None)
        uses[key] = now

    def remove(self, key: str) -> None:
        try:
            with self._talking():
                (used,) = self._client.zmscore(self._entry_keys[0], [key])
            # Another process may have stored the key again since it went: its row stays.
            if used is None or key in self._store:
                used_args: list[Any] = [0]
            else:
                used_args = [1, key, repr(used)]
            with self._lock, self._talking():
                self._remove(keys=self._entry_keys, args=[*used_args, *self._take_uses()])
        except StoreError as exc:
            # A row left behind only makes the cache hold less; the next bind() drops it.
            log.warning("%s; %r stays listed", exc, key)

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        """Add what `snapshot()`'s counters grow by to the fleet's, with every flush."""
        with self._lock:
            self._counts.attach(snapshot)

    def fleet_stats(self) -> tuple[str, dict[str, int]]:
        """The counters summed over every process that shares this ledger (this one too)."""
        self.flush()
        with self._talking():
            raw = self._client.hgetall(self._stats_key)
        return self.where, {name.decode(): int(value) for name, value in raw.items()}

    def flush(self) -> None:
        """Write buffered uses and counters now."""
        with self._lock:
            counts = self._counts.take()
            if not self._uses and not counts:
                return
            uses = self._take_uses()
            pairs = [arg for name, amount in counts.items() for arg in (name, amount)]
            with self._talking():
                self._flush(
                    keys=[self._stats_key, self._entry_keys[0]], args=[len(counts), *pairs, *uses]
                )

    def _start_flusher(self) -> None:
        self._flusher = threading.Thread(
            target=_flush_periodically,
            args=(weakref.ref(self), self._closed),
            name="csf-ledger-flush",
            daemon=True,
        )
        self._flusher.start()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        atexit.unregister(self._at_exit)
        flusher = self._flusher
        if flusher is not None and flusher is not threading.current_thread():
            flusher.join(timeout=2)
        try:
            self.flush()
        except StoreError as exc:
            log.warning("%s; recent uses and counts lost", exc)
        if self._owned:
            self._client.close()
