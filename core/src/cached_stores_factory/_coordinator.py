"""What a cached store knows about each key, in one place: its fetches, its changes, its bypass.

Decisions only, no I/O (sans-I/O): the fetch and write paths report events here (a fetch
starts, a change begins or ends, a copy could not be dropped) and act on the answers.  A key
has a record only while something is in flight for it, or while it is bypassed, or while the
engine must remember when it stored a copy its store can't date: the map is bounded by what is
cached or in flight, never by the keys ever seen.
"""

from __future__ import annotations

import threading
from typing import IO

from ._spool import SharedSpool
from ._store import EntryReader, EntryStat

__all__ = ["Coordinator", "Flight"]


class Flight:
    """One fetch of one key, shared by every reader that asked for it meanwhile.

    Its readers are served from the local entry it stored, or from `spool` when the bytes
    are not kept.  `pin` is that local entry as the fetch opened it: a reader that finds the
    entry gone (evicted by a concurrent insert) is served from it, so an eviction never
    costs a second fetch.  The last reader takes the pin itself, or closes it.
    `changed` is set when a change of the key began during the fetch: it stores nothing.

    A ranged reader's remote stat is a flight too, with no bytes: only `stat` or `error`.
    """

    __slots__ = ("changed", "done", "error", "lock", "pin", "readers", "spool", "stat")

    def __init__(self, *, changed: bool) -> None:
        self.done = threading.Event()
        self.lock = threading.Lock()  # guards pin, spool and readers once the fetch is done
        self.error: BaseException | None = None
        self.pin: EntryReader | None = None
        self.spool: SharedSpool | None = None
        self.stat: EntryStat | None = None  # the spool's, or the remote's for a stat
        self.changed = changed
        self.readers = 1  # not served yet; final once the fetch is done

    def serve_unkept(self, stream: IO[bytes], stat: EntryStat) -> None:
        self.spool = SharedSpool.fill(stream)
        self.stat = stat

    def answer(self) -> EntryStat | None:
        """What a ranged reader learns from this finished flight: None when it pinned a local
        copy (read that instead), else the stat of what the remote sent."""
        with self.lock:
            return None if self.pin is not None else self.stat

    def take_pin(self) -> EntryReader | None:
        """The pinned entry, to the last reader still waiting to be served."""
        with self.lock:
            pin = self.pin if self.readers == 1 else None
            if pin is not None:
                self.pin = None
            return pin

    def spool_pin(self) -> None:
        """Serve the pinned entry from a spool from now on: its local copy is gone."""
        with self.lock:
            if self.spool is None:
                assert self.pin is not None
                self.spool = SharedSpool.of(self.pin.stream, self.pin.stat.size)
                self.stat = self.pin.stat
                self.pin.close()
                self.pin = None

    def release(self) -> None:
        """One reader is served (or failed); the last one closes a pin nobody took."""
        with self.lock:
            self.readers -= 1
            pin = self.pin if not self.readers else None
            if pin is not None:
                self.pin = None
        if pin is not None:
            pin.close()


class _Key:
    """The record of one key: see Coordinator."""

    __slots__ = ("asking", "changes", "contended", "flight", "stored_at")

    def __init__(self) -> None:
        self.flight: Flight | None = None
        self.asking: Flight | None = None  # a remote stat, for ranged readers
        self.changes = 0  # writes and deletes running
        self.contended = False  # two changes overlapped: which one the remote kept is unknown
        self.stored_at: float | None = None  # for copies whose store can't date them

    def idle(self) -> bool:
        return (
            self.flight is None
            and self.asking is None
            and not self.changes
            and self.stored_at is None
        )


class Change:
    """A write or delete of one key in progress; `contended` once another one overlapped it."""

    __slots__ = ("key", "record")

    def __init__(self, key: str, record: _Key) -> None:
        self.key = key
        self.record = record

    @property
    def contended(self) -> bool:
        return self.record.contended


class Coordinator:
    """Per-key state of one cached store, behind one lock that is never held across I/O.

    `bypassed` is read without the lock on the hit path: keys whose local copy may be
    older than the remote (it could not be dropped when the remote changed) are served
    from the remote until the copy goes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self.bypassed: set[str] = set()

    def __len__(self) -> int:
        """Keys with a record: what is in flight, changing or dated by the engine."""
        return len(self._keys)

    def _record(self, key: str) -> _Key:
        record = self._keys.get(key)
        if record is None:
            record = self._keys[key] = _Key()
        return record

    def _settle(self, key: str, record: _Key) -> None:
        if record.idle():
            del self._keys[key]

    # -- fetches ---------------------------------------------------------------------------

    def join_fetch(self, key: str) -> tuple[Flight, bool]:
        """The key's flight, and whether the caller leads it (starts the fetch)."""
        with self._lock:
            record = self._record(key)
            flight = record.flight
            if flight is None:
                flight = record.flight = Flight(changed=bool(record.changes))
                return flight, True
            flight.readers += 1
            return flight, False

    def lead_alone(self, key: str) -> Flight | None:
        """A new flight for a background refresh; None if a fetch of the key is running."""
        with self._lock:
            record = self._record(key)
            if record.flight is not None:
                return None
            flight = record.flight = Flight(changed=bool(record.changes))
            return flight

    def end_fetch(self, key: str) -> None:
        with self._lock:
            record = self._keys[key]
            record.flight = None
            self._settle(key, record)

    def join_stat(self, key: str) -> tuple[Flight, bool]:
        """The flight that tells a ranged reader what `key` is, and whether the caller leads it.

        A whole-object fetch in flight answers (this reader counts among its readers), else
        a remote stat already asked, else a new one the caller asks.  A whole-object read
        never waits for a stat: it carries no bytes.
        """
        with self._lock:
            record = self._record(key)
            flight = record.flight if record.flight is not None else record.asking
            if flight is None:
                flight = record.asking = Flight(changed=False)
                return flight, True
            flight.readers += 1
            return flight, False

    def end_stat(self, key: str) -> None:
        with self._lock:
            record = self._keys[key]
            record.asking = None
            self._settle(key, record)

    # -- changes ---------------------------------------------------------------------------

    def begin_change(self, key: str) -> Change:
        """A write or delete starts: a fetch in flight stores nothing."""
        with self._lock:
            record = self._record(key)
            if record.changes:
                record.contended = True
            record.changes += 1
            if record.flight is not None:
                record.flight.changed = True
            record.stored_at = None
            return Change(key, record)

    def end_change(self, change: Change) -> None:
        with self._lock:
            record = change.record
            record.changes -= 1
            if not record.changes:
                record.contended = False
            self._settle(change.key, record)

    def invalidated(self, key: str) -> None:
        """The local copy is being dropped: a fetch in flight stores nothing."""
        with self._lock:
            record = self._keys.get(key)
            if record is not None:
                if record.flight is not None:
                    record.flight.changed = True
                record.stored_at = None
                self._settle(key, record)

    def invalidated_all(self) -> None:
        """Every local copy is being dropped (clear): no fetch in flight stores anything."""
        with self._lock:
            for key, record in list(self._keys.items()):
                if record.flight is not None:
                    record.flight.changed = True
                record.stored_at = None
                self._settle(key, record)

    # -- copies the store can't date ---------------------------------------------------------

    def stored(self, key: str, when: float) -> None:
        with self._lock:
            self._record(key).stored_at = when

    def stored_at(self, key: str) -> float | None:
        record = self._keys.get(key)
        return None if record is None else record.stored_at

    def forget(self, key: str) -> None:
        """The key's copy is gone: nothing to remember about it."""
        if key not in self._keys:
            return
        with self._lock:
            record = self._keys.get(key)
            if record is not None:
                record.stored_at = None
                self._settle(key, record)
