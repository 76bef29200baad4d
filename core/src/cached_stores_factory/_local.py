"""The local tier as the engine uses it: outage back-off, fences, the policy, and drops."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import IO

from ._coordinator import Coordinator
from ._log import lazy_logger
from ._policy import CachePolicy
from ._resilience import Outage
from ._store import EntryReader, EntryStat, Store
from .errors import CorruptEntryError, KeyNotFoundError, LocalStoreUnavailableError, StoreError

__all__ = ["CHANGE_HOLD", "LOCAL_FAILURES", "LocalTier"]

log = lazy_logger("cached_stores_factory")

LOCAL_FAILURES = (StoreError, OSError)  # a local store that is down, not a missing entry

CHANGE_HOLD = 60.0
"""Seconds a change mark keeps other processes' fetches from storing when its writer died."""


class LocalTier:
    """One local store, shared by a cached store's read and write paths.

    A local store that fails is a slow cache for reads: they go to the remote, the outage is
    logged once, and the store is skipped for a back-off period.  A write needs it, though:
    other processes may hold a copy of the key, and only the local store can drop or fence it,
    so a write it cannot mark fails before the remote changes, unless `availability` is set
    (then the copy is bypassed in this process only; see docs/coherence.md).
    """

    def __init__(
        self,
        store: Store,
        policy: CachePolicy,
        coordinator: Coordinator,
        evicted: Callable[[str], None],
        *,
        availability: bool,
    ) -> None:
        self.store = store
        self.policy = policy
        self.keys = coordinator
        self.outage = Outage("local", store)
        self.availability = availability
        self._evicted = evicted
        # A store with neither open_read nor stat of its own can't date what it reads back.
        kind = type(store)
        self.undated = kind.open_read is Store.open_read and kind.stat is Store.stat

    def usable(self, key: str) -> bool:
        """Whether the local store is in use now (no outage) for `key` (not bypassed)."""
        bypassed = self.keys.bypassed
        return not self.outage.skipping() and not (bypassed and key in bypassed)

    def bypass(self, key: str, error: Exception | None = None) -> None:
        """Serve `key` from the remote until its local copies can be dropped."""
        if error is not None:
            self.outage.failed(error)
        self.keys.bypassed.add(key)

    def failed(self, key: str, error: Exception) -> None:
        """A local read failed: a corrupt copy goes; any other failure starts an outage."""
        if isinstance(error, CorruptEntryError):
            log.warning("dropping a corrupt local copy: %s", error)
            self.drop_quietly(key)
        else:
            self.outage.failed(error)

    def dated(self, key: str, stat: EntryStat) -> EntryStat:
        """`stat` with the time this engine stored the copy, if its store can't say."""
        if stat.modified is not None:
            return stat
        stored = self.keys.stored_at(key)
        return stat if stored is None else stat._replace(modified=stored)

    def open_entry(self, key: str) -> EntryReader | None:
        """The local entry, dated, or None if missing; LOCAL_FAILURES raise: it is not usable."""
        if self.outage.skipping() or not self.settled(key):
            raise LocalStoreUnavailableError(f"the local store {self.store!r} is not in use")
        try:
            entry = self.store.open_read(key)
        except KeyNotFoundError:
            self.keys.forget(key)
            return None
        except CorruptEntryError as exc:
            self.failed(key, exc)
            return None
        except LOCAL_FAILURES as exc:
            self.outage.failed(exc)
            raise
        self.outage.answered()
        if entry.stat.modified is None:
            return EntryReader(entry.stream, self.dated(key, entry.stat))
        return entry

    def fresh_stat(self, key: str) -> EntryStat | None:
        """The local copy's stat if it is fresh; None if missing, stale or unavailable."""
        if self.outage.skipping() or not self.settled(key):
            return None
        try:
            stat = self.store.stat(key)
        except KeyNotFoundError:
            return None
        except LOCAL_FAILURES as exc:
            self.failed(key, exc)
            return None
        self.outage.answered()
        stat = self.dated(key, stat)
        return stat if self.policy.is_fresh(key, stat) else None

    def entry_stat(self, key: str) -> EntryStat | None:
        """The local entry's stat as stored (its etag too); None if missing or the store failed."""
        try:
            return self.store.stat(key)
        except (KeyNotFoundError, *LOCAL_FAILURES):
            return None

    def fence(self, key: str) -> str | None:
        """The key's fence before a fetch, or None: the fetch must store nothing."""
        try:
            fence = self.store.fence(key)
        except LOCAL_FAILURES as exc:
            self.outage.failed(exc)
            return None
        self.outage.answered()
        return fence

    def insert(self, key: str, stream: IO[bytes], etag: str | None, fence: str) -> EntryStat | None:
        """Store a copy if the fence held, tell the policy; None if nothing was stored."""
        stat = self.store.put_fenced(key, stream, etag=etag, fence=fence)
        if stat is not None:
            self.inserted(key, stat)
        return stat

    def stamp(self, key: str, stat: EntryStat) -> None:
        """Remember when a copy was stored or revalidated, if its store can't say on reading."""
        if self.undated or stat.modified is None:
            import time

            self.keys.stored(key, stat.modified or time.time())

    def inserted(self, key: str, stat: EntryStat) -> None:
        """The local store holds a new copy: tell the policy, and evict what it says."""
        self.stamp(key, stat)
        self._admitted(key, stat)

    def keep(self, key: str, stream: IO[bytes], etag: str) -> Sequence[str]:
        """Store an entry no fence guards (a block: its key names its version) and tell the
        policy: the keys that went for it, `key` among them if it could not stay."""
        return self._admitted(key, self.store.put_stream(key, stream, etag=etag))

    def _admitted(self, key: str, stat: EntryStat) -> Sequence[str]:
        """Tell the policy of a new entry and evict what it says: the keys that went."""
        try:
            victims = self.policy.on_insert(key, stat)
        except Exception:
            # The policy can't track the entry, so it may not stay (readers get the pin).
            log.exception("the policy failed on inserting %r; its local copy is dropped", key)
            self.drop_quietly(key, tell_policy=False)
            return (key,)
        self.evict(victims)
        return victims

    def evict(self, victims: Iterable[str]) -> None:
        """Drop the copies the policy gave up, counted as evictions."""
        for victim in victims:
            if self.drop_quietly(victim):
                self._evicted(victim)

    def drop(self, key: str) -> bool:
        """Drop the copy and move its fence (a fetch in flight anywhere stores nothing).

        The local store's errors raise.
        """
        self.keys.invalidated(key)
        return self._drop_copy(key)

    def _drop_copy(self, key: str) -> bool:
        removed, mark = self.store.begin_change(key, hold=CHANGE_HOLD)
        self.store.end_change(key, mark)
        self.keys.bypassed.discard(key)
        self.policy.on_delete(key)
        return removed

    def discard(self, tracked: Iterable[str], untracked: Iterable[str] = ()) -> None:
        """Delete local entries: `untracked` ones the policy never saw (bookkeeping), then
        `tracked` ones, telling the policy of each that was there.  The store's errors raise."""
        for key in untracked:
            self.store.delete(key)
        for key in tracked:
            if self.store.delete(key):
                self.policy.on_delete(key)

    def drop_quietly(self, key: str, *, tell_policy: bool = True) -> bool:
        """Drop the copy, True if there was one; if that fails, bypass the key until it can be
        dropped (it goes before it is served again)."""
        self.keys.forget(key)
        try:
            removed = self.store.delete(key)
        except LOCAL_FAILURES as exc:
            self.bypass(key, exc)
            removed = False
        if tell_policy:
            self.policy.on_delete(key)
        return removed

    def settled(self, key: str) -> bool:
        """Whether the local store may serve `key`: its copy is not possibly outdated."""
        bypassed = self.keys.bypassed
        if not bypassed or key not in bypassed:
            return True
        try:
            self._drop_copy(key)  # the fetch that settles it may then store a new one
        except LOCAL_FAILURES as exc:
            self.outage.failed(exc)
            return False
        return True

    def begin_change(self, key: str) -> tuple[bool, str] | None:
        """Mark `key` changing and drop its copy, before the remote changes.

        Whether a copy went, and the mark for `end_change`; None when the local store can't
        be used and `availability` lets the write go on anyway (the key is then bypassed
        here).  Otherwise a local store that fails raises LocalStoreUnavailableError, and
        the remote is left as it was.
        """
        try:
            if self.outage.skipping():  # in its back-off: not asked, as reads don't ask it
                raise LocalStoreUnavailableError(f"the local store {self.store!r} is not in use")
            marked = self.store.begin_change(key, hold=CHANGE_HOLD)
        except LOCAL_FAILURES as exc:
            if not isinstance(exc, LocalStoreUnavailableError):
                self.outage.failed(exc)
            if not self.availability:
                raise LocalStoreUnavailableError(
                    f"{key!r} was not written: the local store {self.store!r} failed ({exc}), "
                    "so copies of it there could be served after the write; the remote is "
                    "unchanged (a cached store built with availability=True writes anyway)"
                ) from exc
            self.bypass(key)
            return None
        self.outage.answered()
        self.keys.bypassed.discard(key)
        self.policy.on_delete(key)
        return marked

    def end_change(self, key: str, mark: str) -> str | None:
        """Drop what was stored meanwhile and unmark `key`: the fence for the new copy, or None.

        A local store that fails here, after the remote changed, can't drop a copy another
        process stored if the key's mark was lost meanwhile (Redis restarted): the key is
        bypassed here, and the change raises LocalStoreUnavailableError unless
        `availability` is set, so the caller knows other processes may still see the old copy.
        """
        try:
            return self.store.end_change(key, mark)
        except LOCAL_FAILURES as exc:
            self.bypass(key, exc)
            if self.availability:
                return None
            raise LocalStoreUnavailableError(
                f"{key!r} was written to the remote, but the local store {self.store!r} "
                f"failed ({exc}) before its copies could be dropped: other processes may "
                "serve the old copy until its change mark lapses",
                remote_changed=True,
            ) from exc
