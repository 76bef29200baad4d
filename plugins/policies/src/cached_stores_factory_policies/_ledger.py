"""Ledgers: the order of a bounded cache's entries, with their sizes, and who goes next.

`MemoryLedger` lives in this process and is rebuilt from the store at bind time: for stores
with no local directory (memory, Redis, S3).  `SQLiteLedger` lives in a SQLite database in
the store's `state_dir()`: it outlasts the process and is shared by every process that uses
the store, so one transaction per insert keeps one bound for all of them.

Entries are ordered by `(used, seq)`: `used` is a clock reading (the insert time; for LRU,
the last use) and `seq` a counter that orders equal readings.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import attrs

from cached_stores_factory import Store
from cached_stores_factory.errors import CorruptEntryError, KeyNotFoundError, StoreError

from ._fleet import CounterDeltas

__all__ = ["Ledger", "MemoryLedger", "SQLiteLedger", "open_ledger"]

log = logging.getLogger("cached_stores_factory.policies")

# Long enough to wait out another process's bind() over a large store.
BUSY_TIMEOUT_SECONDS = 60.0
CLOSE_TIMEOUT_MS = 2000
CACHE_KIB = 2000  # SQLite's default page cache
SYNC_CACHE_KIB = 256 * 1024  # while bind() rebuilds: enough for ~2 million rows


class Ledger(Protocol):
    def insert(self, key: str, size: int, now: float) -> list[str]:
        """Record `key` as the newest entry; remove and return the keys that must go."""

    def touch(self, key: str, now: float) -> None:
        """`key` was used at `now` (LRU).  Must cost O(1) and make no system call."""

    def remove(self, key: str) -> None:
        """The store's entry for `key` is gone."""

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        """Add what `snapshot()`'s counters grow by to counters other processes share."""

    def fleet_stats(self) -> tuple[str, dict[str, int]] | None:
        """Where the shared counters live and their sums; None for a ledger in process."""

    def close(self) -> None:
        """Write what is buffered and release the state.  Idempotent."""


@attrs.frozen
class Bounds:
    """At most `depth` entries and `max_bytes` bytes; None: no bound of that kind."""

    depth: int | None
    max_bytes: int | None

    def exceeded(self, count: int, total: int) -> bool:
        return (self.depth is not None and count > self.depth) or (
            self.max_bytes is not None and total > self.max_bytes
        )


def _store_entries(store: Store, keys: Iterable[str]) -> list[tuple[float, str, int]]:
    """(modified, key, size) of these entries, oldest first: the order a rebuild starts from."""
    entries = []
    for key in keys:
        try:
            stat = store.stat(key)
        except (KeyNotFoundError, CorruptEntryError):
            continue  # gone, or found corrupt: its next read drops it
        entries.append((stat.modified or 0.0, key, stat.size))  # unknown age: the oldest
    entries.sort()
    return entries


class MemoryLedger:
    """An OrderedDict of key -> size, oldest first; every operation is O(1) per entry moved."""

    def __init__(self, store: Store, bounds: Bounds) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        try:
            entries = _store_entries(store, list(store.keys()))
        except (StoreError, OSError) as exc:  # a store that is down still gets a policy
            log.warning("%r can't list its entries (%s); the policy starts empty", store, exc)
            entries = []
        self._order: OrderedDict[str, int] = OrderedDict((key, size) for _, key, size in entries)
        self._total = sum(self._order.values())

    def insert(self, key: str, size: int, now: float) -> list[str]:
        with self._lock:
            self._total += size - self._order.pop(key, 0)
            self._order[key] = size
            victims = []
            while self._bounds.exceeded(len(self._order), self._total):
                victim, victim_size = self._order.popitem(last=False)
                self._total -= victim_size
                victims.append(victim)
            return victims

    def touch(self, key: str, now: float) -> None:
        # No lock: a hit never waits for an insert.  move_to_end is one atomic step, and
        # reordering never changes which keys or how many bytes are held.
        try:  # noqa: SIM105 - contextlib.suppress would cost more than the move
            self._order.move_to_end(key)
        except KeyError:
            pass  # evicted meanwhile

    def remove(self, key: str) -> None:
        with self._lock:
            self._total -= self._order.pop(key, 0)

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        pass  # nobody to share them with

    def fleet_stats(self) -> None:
        return None

    def close(self) -> None:
        pass


_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    used REAL NOT NULL,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_order ON entries (used, seq);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size;
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size;
END;
CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - OLD.size + NEW.size;
END;
CREATE TABLE IF NOT EXISTS stats (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
COMMIT;
"""

_UPSERT = (
    "INSERT INTO entries (key, size, used, seq) VALUES (?, ?, ?, ?) ON CONFLICT (key) "
    "DO UPDATE SET size = excluded.size, used = excluded.used, seq = excluded.seq"
)


class SQLiteLedger:
    """The ledger in `<state_dir>/<name>.sqlite3`, shared by processes, kept across restarts.

    Writes (insert, remove) run one short `BEGIN IMMEDIATE` transaction each, so eviction
    decisions of all processes are serialized and the bound holds at every commit.  Uses
    (`touch`) stay in this process's memory until the next write transaction, `close()` or
    interpreter exit, so a hit makes no system call.

    A database file removed (or replaced) under the processes that use it is noticed by
    their next insert, which opens the file now at the path and reconciles it with the store
    (a stat() per insert), so all of them count in one database again.
    """

    def __init__(self, store: Store, bounds: Bounds, path: Path) -> None:
        self._store = store
        self._bounds = bounds
        self._path = path
        self._lock = threading.Lock()
        self._uses: dict[str, float] = {}  # key -> last use, in order of last use
        self._counts = CounterDeltas()  # this process's counters, not yet written
        self._db: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # the open database's (device, inode)
        self._pid = -1
        self._sync()
        # atexit holds only a weak reference: a dropped ledger is not kept alive by it.
        ref = weakref.ref(self)

        def at_exit() -> None:
            ledger = ref()
            if ledger is not None:
                ledger.close()

        self._at_exit = at_exit
        atexit.register(at_exit)

    def _connect(self) -> sqlite3.Connection:
        """This process's connection; a forked child opens its own and drops inherited uses."""
        if self._db is None or self._pid != os.getpid():
            if self._pid not in (-1, os.getpid()):
                self._uses.clear()  # the parent writes its own buffered uses
                self._counts.forget()
            # Imported here, not at the top: the plugin module loads at every start (entry-point
            # scan) and filelock's import costs more than the rest of the plugin together.
            from filelock import FileLock

            _make_private(Path(f"{self._path}.lock"))
            # Switching a new database to WAL fails at once, without waiting, when another
            # process does the same: so processes set up the database one at a time.
            with FileLock(f"{self._path}.lock", timeout=BUSY_TIMEOUT_SECONDS):
                if not self._path.exists():
                    # A -wal or -shm file without its database is a removed database's (and
                    # may still be open elsewhere): a new database must not take it over.
                    for leftover in ("-wal", "-shm"):
                        Path(f"{self._path}{leftover}").unlink(missing_ok=True)
                _make_private(self._path)  # SQLite gives its -wal and -shm files the db's mode
                db = sqlite3.connect(
                    self._path,
                    timeout=BUSY_TIMEOUT_SECONDS,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.execute("PRAGMA journal_mode = WAL")
                db.executescript(_SCHEMA)
                self._file = _file_identity(self._path)
            db.execute("PRAGMA synchronous = NORMAL")
            self._db, self._pid = db, os.getpid()
        return self._db

    def _heal_if_lost(self) -> None:
        """If the database file was removed or replaced, open the one now at the path (new if
        none) and reconcile it with the store: writes to the old file count for nobody."""
        try:
            current = _file_identity(self._path)
        except FileNotFoundError:
            current = None
        if current == self._file or self._pid != os.getpid():
            return
        log.warning(
            "the policy state %s was removed or replaced: rebuilding it from %r",
            self._path,
            self._store,
        )
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        self._sync()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._write_uses(db)
                self._write_counts(db)
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def _next_seqs(self, db: sqlite3.Connection, count: int) -> range:
        (last,) = db.execute("UPDATE totals SET seq = seq + ? RETURNING seq", (count,)).fetchone()
        return range(last - count + 1, last + 1)

    def _write_uses(self, db: sqlite3.Connection) -> None:
        if not self._uses:
            return
        taken, self._uses = self._uses, {}
        uses = list(taken.items())  # one atomic copy, while touch() may still add to `taken`
        seqs = self._next_seqs(db, len(uses))
        # A later use recorded by another process wins: `used` only moves forward.
        db.executemany(
            "UPDATE entries SET used = ?, seq = ? WHERE key = ? AND used <= ?",
            [(used, seq, key, used) for (key, used), seq in zip(uses, seqs, strict=True)],
        )

    def _write_counts(self, db: sqlite3.Connection) -> None:
        db.executemany(
            "INSERT INTO stats VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
            [(name, grown, grown) for name, grown in self._counts.take().items()],
        )

    def share_stats(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        """Add what `snapshot()`'s counters grow by to the database's, in every transaction."""
        with self._lock:
            self._counts.attach(snapshot)

    def fleet_stats(self) -> tuple[str, dict[str, int]]:
        """The counters summed over every process that shares this database (this one too)."""
        with self._transaction() as db:
            rows = db.execute("SELECT name, value FROM stats").fetchall()
        return f"SQLite ledger {self._path}", dict(rows)

    def _sync(self) -> None:
        """Make the ledger match the store: forget vanished entries, adopt unknown ones.

        The slow part, listing and statting the store, runs before the transaction, since
        other processes wait for the write lock.  Inside it, a row whose entry is missing
        now is stale (rows are committed only after their entry is stored) and goes.  An
        entry that vanished since it was listed is adopted anyway: such a row only makes the
        cache hold less, until the next bind() drops it.
        """
        present = set(self._store.keys())
        with self._lock:
            db = self._connect()
            known = {key for (key,) in db.execute("SELECT key FROM entries")}
        candidates = _store_entries(self._store, present - known)
        with self._transaction() as db:
            # A rebuild writes rows in random key order: a page cache that holds the whole
            # ledger makes that much faster (docs/performance.md).  It is given back right after.
            db.execute(f"PRAGMA cache_size = -{SYNC_CACHE_KIB}")
            known = {key for (key,) in db.execute("SELECT key FROM entries")}
            gone = [key for key in known - present if key not in self._store]
            db.executemany("DELETE FROM entries WHERE key = ?", ((key,) for key in gone))
            adopted = [entry for entry in candidates if entry[1] not in known]
            rows = zip(adopted, self._next_seqs(db, len(adopted)), strict=True)
            db.executemany(_UPSERT, [(key, size, used, seq) for (used, key, size), seq in rows])
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")

    def insert(self, key: str, size: int, now: float) -> list[str]:
        try:
            self._heal_if_lost()  # one stat(): inserts are where the bound must hold
            with self._transaction() as db:
                (seq,) = self._next_seqs(db, 1)
                db.execute(_UPSERT, (key, size, now, seq))
                return self._evict(db)
        except (sqlite3.OperationalError, OSError, StoreError) as exc:
            # Never exceed the bound because the ledger is busy (or could not be rebuilt):
            # drop the new copy instead.
            log.warning("policy state at %s unavailable (%s); not caching %r", self._path, exc, key)
            return [key]

    def _evict(self, db: sqlite3.Connection) -> list[str]:
        count, total = db.execute("SELECT count, bytes FROM totals").fetchone()
        victims = []
        if self._bounds.exceeded(count, total):
            oldest_first = db.execute("SELECT key, size FROM entries ORDER BY used, seq")
            for key, size in oldest_first:
                victims.append(key)
                count, total = count - 1, total - size
                if not self._bounds.exceeded(count, total):
                    break
            oldest_first.close()
            db.executemany("DELETE FROM entries WHERE key = ?", ((k,) for k in victims))
        return victims

    def touch(self, key: str, now: float) -> None:
        # No lock: a hit never waits for a transaction.  A use that lands in the buffer just
        # as a transaction takes it is lost, which only makes the entry look older.
        uses = self._uses
        uses.pop(key, None)
        uses[key] = now

    def remove(self, key: str) -> None:
        try:
            with self._transaction() as db:
                # Another process may have stored the key again since it went: its row stays.
                if key not in self._store:
                    db.execute("DELETE FROM entries WHERE key = ?", (key,))
        except sqlite3.OperationalError as exc:
            # A row left behind only makes the cache hold less; the next bind() drops it.
            log.warning(
                "policy state at %s unavailable (%s); %r stays listed", self._path, exc, key
            )

    def close(self) -> None:
        atexit.unregister(self._at_exit)
        if self._db is None or self._pid != os.getpid():
            return
        # Exiting must not hang behind another process's long rebuild: wait a little only.
        self._db.execute(f"PRAGMA busy_timeout = {CLOSE_TIMEOUT_MS}")
        try:
            with self._transaction():
                pass  # writes the buffered uses
        except sqlite3.OperationalError as exc:
            log.warning("policy state at %s unavailable (%s); recent uses lost", self._path, exc)
        finally:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None


def _file_identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def _make_private(path: Path) -> None:
    """Create `path` if missing and make it 0600, whatever the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def open_ledger(store: Store, bounds: Bounds, name: str) -> Ledger:
    """The lasting, shared ledger when the store has a state directory, else one in memory.

    A state directory that cannot hold the ledger (read-only, full, something else in the
    ledger's place) costs the lasting ledger, not the cache: the policy keeps its ledger in
    this process, and says so once.
    """
    state_dir = store.state_dir()
    if state_dir is None:
        return MemoryLedger(store, bounds)
    path = state_dir / f"{name}.sqlite3"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteLedger(store, bounds, path)
    except (OSError, sqlite3.Error) as exc:
        log.warning(
            "cannot open the %s policy's state at %s (%s): keeping its ledger in this process; "
            "its bounds hold per process and start empty after a restart",
            name,
            path,
            exc,
        )
        return MemoryLedger(store, bounds)
