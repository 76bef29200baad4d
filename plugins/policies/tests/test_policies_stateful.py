"""Each policy against a reference model, through the real engine, with restarts.

Hypothesis drives reads, writes, deletes, invalidations, purges, clock advances and
restarts.  The model says which reads are hits (no remote read) and which keys the local
store holds after every step.  Three local stores: memory (state rebuilt at bind), memory
with a state directory (the SQLite ledger, manual clock) and the tempfile store (the SQLite
ledger on disk; a clock advance ages the files).  With a state directory, two cached stores
share the local store as two processes would, each with its own policy and connection.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from policies_testlib import StatefulMemoryStore, age_tempfile_store

from cached_stores_factory import CachedStore, CachedStoreFactory, CachePolicy, MemoryStore, Store
from cached_stores_factory.errors import KeyNotFoundError
from cached_stores_factory.testing.policies import ManualClock
from cached_stores_factory.testing.servers import RedisServer
from cached_stores_factory_policies import FIFOCache, LRUCache, TTLCache, _redis_ledger
from cached_stores_factory_tempfile import TempfileStore

KEYS = ["a", "b", "c/d", "e", "f/g/h"]
STEP = 100.0  # clock advances are whole steps; ages are whole steps plus a few ms at most
AGE = 250.0  # the TTL: fresh for two steps, stale on the third


@attrs.frozen
class Config:
    """A policy configuration and the rules the model applies for it."""

    kind: str  # "ttl", "fifo" or "lru"
    depth: int | None = None  # TTL's max_entries
    max_bytes: int | None = None
    ttl: float | None = None

    def make(self, clock: Callable[[], float], **ledger: str) -> CachePolicy:
        if self.kind == "ttl":
            if self.depth is None:
                return TTLCache(AGE, clock=clock)
            return TTLCache(
                AGE, max_entries=self.depth, max_bytes=self.max_bytes, clock=clock, **ledger
            )
        cls = FIFOCache if self.kind == "fifo" else LRUCache
        assert self.depth is not None
        return cls(self.depth, max_bytes=self.max_bytes, ttl=self.ttl, clock=clock, **ledger)

    @property
    def aging(self) -> float | None:
        return AGE if self.kind == "ttl" else self.ttl


CONFIGS = {
    "ttl": Config("ttl"),
    # Bounded TTL evicts the oldest stored, as FIFO does.
    "ttl+bounds": Config("ttl", depth=3, max_bytes=24),
    "fifo": Config("fifo", depth=3, max_bytes=24),
    "lru": Config("lru", depth=3, max_bytes=24),
    "fifo+ttl": Config("fifo", depth=2, ttl=AGE),
    "lru+ttl": Config("lru", depth=3, max_bytes=40, ttl=AGE),
}


class LocalSide:
    """How a test makes, reopens and ages one kind of local store.

    `openers` cached stores share it, as separate processes would: two tempfile stores on one
    directory, or one memory store with a state directory seen by two policies (two SQLite
    connections), or one memory store with a ledger in Redis (two Redis connections).  A
    plain memory store has no shared state, so it gets one opener.
    """

    def __init__(self, kind: str, workdir: Path, ledger_url: str | None = None) -> None:
        self.kind = kind
        self.workdir = workdir
        # A new ledger in Redis for each run: its name, and the URL of the server.
        self.ledger = (
            {"ledger": ledger_url, "ledger_key": f"stateful-{uuid.uuid4().hex}"}
            if ledger_url
            else {}
        )
        self.fake = ManualClock()
        self.clock: Callable[[], float] = time.time if kind == "tempfile" else self.fake
        self.openers = 1 if kind == "memory" else 2
        self.shared = self.open()

    @property
    def lasting(self) -> bool:
        """Whether LRU recency survives a restart (a state directory keeps it)."""
        return self.kind != "memory"

    def open(self) -> Store:
        """The store as one more process opens it."""
        if self.kind in ("memory", "memory+redis"):
            return MemoryStore(clock=self.fake)
        if self.kind == "memory+state":
            return StatefulMemoryStore(self.workdir / "state", clock=self.fake)
        return TempfileStore("local", root=self.workdir / "local", fsync=False)

    def store_for_opener(self) -> Store:
        return self.open() if self.kind == "tempfile" else self.shared

    def advance(self, seconds: float) -> None:
        if self.kind == "tempfile":
            age_tempfile_store(self.shared, seconds)  # type: ignore[arg-type]
        else:
            self.fake.advance(seconds)


@attrs.define
class Copy:
    """The model of one local copy."""

    stored_at: float  # model time, for aging
    stored: int  # event count when stored: the FIFO order, and LRU's after a lost ledger
    used: int  # event count of the last use the shared ledger knows of: the LRU order
    size: int


def machine_for(
    config: Config, local_kind: str, ledger_url: str | None = None
) -> type[RuleBasedStateMachine]:
    side_openers = 1 if local_kind == "memory" else 2
    openers = st.integers(0, side_openers - 1)

    class PolicyMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.workdir = Path(tempfile.mkdtemp(prefix="csf-policy-"))
            self.side = LocalSide(local_kind, self.workdir, ledger_url)
            self.remote = MemoryStore()
            self.caches = self.build_all()
            self.now = 0.0  # the model's clock, in whole steps
            self.events = 0  # orders stores and uses, as the policies' clock readings do
            self.remote_model: dict[str, bytes] = {}
            self.local_model: dict[str, Copy] = {}
            # LRU uses each opener made that its ledger has not written yet, oldest first.
            self.pending: list[dict[str, int]] = [{} for _ in range(side_openers)]

        def build_all(self) -> list[CachedStore]:
            return [
                CachedStoreFactory(
                    self.side.store_for_opener(),
                    self.remote,
                    config.make(self.side.clock, **self.side.ledger),
                ).build()
                for _ in range(side_openers)
            ]

        # -- the model ----------------------------------------------------------------------

        def tick(self) -> int:
            self.events += 1
            return self.events

        def fresh(self, key: str) -> bool:
            aging = config.aging
            return key in self.local_model and (
                aging is None or self.now - self.local_model[key].stored_at < aging
            )

        def admitted(self, data: bytes) -> bool:
            return config.max_bytes is None or len(data) <= config.max_bytes

        def flush(self, who: int) -> None:
            """The opener's ledger writes its buffered uses: each transaction starts so."""
            for key, used in self.pending[who].items():
                if key in self.local_model:
                    copy = self.local_model[key]
                    copy.used = max(copy.used, used)
            self.pending[who].clear()

        def used(self, who: int, key: str) -> None:
            if config.kind != "lru":
                return
            if self.side.lasting:  # SQLite and Redis ledgers buffer uses until a write
                self.pending[who].pop(key, None)
                self.pending[who][key] = self.tick()
            else:
                self.local_model[key].used = self.tick()

        def stored(self, who: int, key: str) -> None:
            self.flush(who)
            event = self.tick()
            size = len(self.remote_model[key])
            self.local_model[key] = Copy(self.now, event, event, size)
            if config.depth is None:
                return
            while len(self.local_model) > config.depth or (
                config.max_bytes is not None
                and sum(copy.size for copy in self.local_model.values()) > config.max_bytes
            ):
                order = "used" if config.kind == "lru" else "stored"
                victim = min(self.local_model, key=lambda k: getattr(self.local_model[k], order))
                del self.local_model[victim]

        def dropped(self, who: int, key: str) -> None:
            self.flush(who)
            self.local_model.pop(key, None)

        # -- rules ----------------------------------------------------------------------------

        @rule(who=openers, key=st.sampled_from(KEYS), data=st.binary(max_size=30))
        def write(self, who: int, key: str, data: bytes) -> None:
            cached = self.caches[who]
            writes = cached.stats()["remote_writes"]
            cached.put_stream(key, io.BytesIO(data))
            assert cached.stats()["remote_writes"] == writes + 1
            self.remote_model[key] = data
            if self.admitted(data):
                self.stored(who, key)
            else:
                self.dropped(who, key)

        @rule(who=openers, key=st.sampled_from(KEYS))
        def read(self, who: int, key: str) -> None:
            cached = self.caches[who]
            reads = cached.stats()["remote_reads"]
            if key not in self.remote_model:
                with pytest.raises(KeyNotFoundError):
                    cached.open_read(key)
                return
            hit = self.fresh(key)
            with cached.open_read(key) as entry:
                assert entry.read() == self.remote_model[key]
            assert cached.stats()["remote_reads"] == reads + (0 if hit else 1)
            if hit:
                self.used(who, key)
            elif self.admitted(self.remote_model[key]):
                self.stored(who, key)

        @rule(who=openers, key=st.sampled_from(KEYS))
        def delete(self, who: int, key: str) -> None:
            existed = key in self.remote_model or key in self.local_model
            assert self.caches[who].delete(key) == existed
            self.remote_model.pop(key, None)
            self.dropped(who, key)

        @rule(who=openers, key=st.sampled_from(KEYS))
        def invalidate(self, who: int, key: str) -> None:
            assert self.caches[who].invalidate(key) == (key in self.local_model)
            self.dropped(who, key)

        @rule(steps=st.integers(1, 3))
        def advance(self, steps: int) -> None:
            self.now += steps * STEP
            self.side.advance(steps * STEP)

        @precondition(lambda self: config.aging is not None)
        @rule(who=openers)
        def purge(self, who: int) -> None:
            stale = [key for key in self.local_model if not self.fresh(key)]
            assert self.caches[who].purge() == len(stale)
            for key in stale:
                self.dropped(who, key)

        @rule()
        def restart(self) -> None:
            for who, cached in enumerate(self.caches):
                cached.close()  # writes its buffered uses
                self.flush(who)
            self.side.shared = self.side.store_for_opener()
            self.caches = self.build_all()
            if config.kind == "lru" and not self.side.lasting:
                # Rebuilt from the store alone: recency is gone, the stored order remains.
                for copy in self.local_model.values():
                    copy.used = copy.stored

        # -- invariants -----------------------------------------------------------------------

        @invariant()
        def local_store_matches_model(self) -> None:
            held = set(self.side.shared.keys())
            assert held == set(self.local_model)
            if config.depth is not None:
                assert len(held) <= config.depth
            if config.max_bytes is not None:
                assert sum(self.side.shared.stat(k).size for k in held) <= config.max_bytes

        @invariant()
        def remote_holds_everything_written(self) -> None:
            held = {key: self.remote.get(key) for key in list(self.remote.keys())}
            assert held == self.remote_model

        def teardown(self) -> None:
            for cached in self.caches:
                cached.close()
            shutil.rmtree(self.workdir, ignore_errors=True)

    PolicyMachine.__name__ = f"PolicyMachine[{config.kind}/{local_kind}]"
    return PolicyMachine


@pytest.mark.parametrize("local_kind", ["memory", "memory+state", "tempfile"])
@pytest.mark.parametrize("config_name", list(CONFIGS))
def test_policy_matches_model(config_name: str, local_kind: str) -> None:
    run_state_machine_as_test(
        machine_for(CONFIGS[config_name], local_kind),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.redis
@pytest.mark.parametrize("config_name", [name for name in CONFIGS if name != "ttl"])
def test_policy_with_a_redis_ledger_matches_model(
    config_name: str, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two openers of one memory store, each with its own connection to one Redis ledger."""
    # Uses are written only by the next insert or removal, as the model expects; the timer
    # is tested on its own.
    monkeypatch.setattr(_redis_ledger, "FLUSH_SECONDS", 3600.0)
    run_state_machine_as_test(
        machine_for(CONFIGS[config_name], "memory+redis", redis_server.url),
        settings=settings(
            max_examples=30,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
