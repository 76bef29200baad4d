"""One change of one key: mark it changing, change the remote, then store the new copy.

The order keeps every process that shares the local store from serving an older copy: the
copy is dropped and the key marked before the remote changes (a mark the local store can't
take refuses the write), and a fetch in flight anywhere stores nothing over the change.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from time import perf_counter
from typing import IO, TYPE_CHECKING

from ._log import lazy_logger
from ._spool import new_spool
from ._stats import REMOTE_WRITES
from ._store import EntryStat
from .errors import LocalStoreUnavailableError
from .events import dispatcher as _events

if TYPE_CHECKING:
    from ._engine import CachedStore
    from ._local import LocalTier

__all__ = ["delete", "write"]

log = lazy_logger("cached_stores_factory")


def write(cached: CachedStore, key: str, stream: IO[bytes], etag: str | None) -> EntryStat:
    """Write through: drop and mark the local copy, write the remote, store the new copy.

    A failed remote write raises; reads then fetch the remote's unchanged version again.  A
    failed local write after a good remote one is logged, not raised: the data is safe in the
    remote.
    """
    if not stream.seekable():
        with new_spool() as spool:
            shutil.copyfileobj(stream, spool)
            spool.seek(0)
            return write(cached, key, spool, etag)
    start = stream.tell()
    tier = cached.tier
    change = cached.coordinator.begin_change(key)
    try:
        cached.partials.forget(key)
        marked = tier.begin_change(key)
        started = perf_counter() if _events.listeners else 0.0
        with _ending(tier, key, marked):
            remote_stat = cached.remote.put_stream(key, stream, etag=etag)
        fence = None if marked is None else tier.end_change(key, marked[1])
        cached.count(REMOTE_WRITES)
        if started:
            cached.emit("write", key, remote_stat.size, seconds=perf_counter() - started)
        if fence is None or change.contended or not cached.policy.admits(remote_stat.size):
            return remote_stat
        stream.seek(start)
        try:
            tier.insert(key, stream, remote_stat.etag, fence)
        except Exception as exc:
            log.warning("caching %r locally failed (%s); the remote holds it", key, exc)
            tier.failed(key, exc)
            tier.drop_quietly(key, tell_policy=False)
            return remote_stat
        if change.contended:  # another write of the key overlapped: which one won is unknown
            tier.drop_quietly(key)
        return remote_stat
    finally:
        cached.coordinator.end_change(change)


def delete(cached: CachedStore, key: str) -> bool:
    """Delete the local copy, then the remote object; True if either held the key."""
    tier = cached.tier
    change = cached.coordinator.begin_change(key)
    try:
        cached.partials.forget(key)
        marked = tier.begin_change(key)
        with _ending(tier, key, marked):
            removed = cached.remote.delete(key)
        if marked is None:
            return removed
        tier.end_change(key, marked[1])
        return removed or marked[0]
    finally:
        cached.coordinator.end_change(change)


@contextlib.contextmanager
def _ending(tier: LocalTier, key: str, marked: tuple[bool, str] | None) -> Iterator[None]:
    """If the remote call raises, end the change quietly: the remote's error is the news."""
    try:
        yield
    except BaseException:
        if marked is not None:
            with contextlib.suppress(LocalStoreUnavailableError):
                tier.end_change(key, marked[1])
        raise
