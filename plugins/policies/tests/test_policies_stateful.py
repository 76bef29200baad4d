"""Each policy against a reference model, through the real engine, with restarts.

Hypothesis drives reads, writes, deletes, invalidations, purges, clock advances and
restarts.  The model says which reads are hits (no remote read) and which keys the local
store holds after every step.  Three local stores: memory (state rebuilt at bind), memory
with a state directory (the SQLite ledger, fake clock) and the tempfile store (the SQLite
ledger on disk; a clock advance ages the files).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections import OrderedDict
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
from cached_stores_factory_policies import FIFOCache, LRUCache, TTLCache
from cached_stores_factory_tempfile import TempfileStore

KEYS = ["a", "b", "c/d", "e", "f/g/h"]
STEP = 100.0  # clock advances are whole steps; ages are whole steps plus a few ms at most
AGE = 250.0  # the TTL: fresh for two steps, stale on the third


@attrs.frozen
class Config:
    """A policy configuration and the rules the model applies for it."""

    kind: str  # "ttl", "fifo" or "lru"
    depth: int | None = None
    max_bytes: int | None = None
    ttl: float | None = None

    def make(self, clock: Callable[[], float]) -> CachePolicy:
        if self.kind == "ttl":
            return TTLCache(AGE, clock=clock)
        cls = FIFOCache if self.kind == "fifo" else LRUCache
        assert self.depth is not None
        return cls(self.depth, max_bytes=self.max_bytes, ttl=self.ttl, clock=clock)

    @property
    def aging(self) -> float | None:
        return AGE if self.kind == "ttl" else self.ttl


CONFIGS = {
    "ttl": Config("ttl"),
    "fifo": Config("fifo", depth=3, max_bytes=24),
    "lru": Config("lru", depth=3, max_bytes=24),
    "fifo+ttl": Config("fifo", depth=2, ttl=AGE),
    "lru+ttl": Config("lru", depth=3, max_bytes=40, ttl=AGE),
}


class LocalSide:
    """How a test makes, reopens and ages one kind of local store."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.clock: Callable[[], float]
        self.fake = ManualClock()
        self.clock = time.time if kind == "tempfile" else self.fake
        self.store = self.open()

    @property
    def lasting(self) -> bool:
        """Whether LRU recency survives a restart (a state directory keeps it)."""
        return self.kind != "memory"

    def open(self) -> Store:
        if self.kind == "memory":
            return MemoryStore(clock=self.fake)
        if self.kind == "memory+state":
            return StatefulMemoryStore(self.workdir / "state", clock=self.fake)
        return TempfileStore("local", root=self.workdir / "local", fsync=False)

    def reopen(self) -> Store:
        """The same entries, as a restarted process sees them."""
        if self.kind == "tempfile":
            self.store = self.open()
        return self.store

    def advance(self, seconds: float) -> None:
        if self.kind == "tempfile":
            age_tempfile_store(self.store, seconds)  # type: ignore[arg-type]
        else:
            self.fake.advance(seconds)


def machine_for(config: Config, local_kind: str) -> type[RuleBasedStateMachine]:
    class PolicyMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.workdir = Path(tempfile.mkdtemp(prefix="csf-policy-"))
            self.side = LocalSide(local_kind, self.workdir)
            self.remote = MemoryStore()
            self.cached = self.build()
            self.now = 0.0  # the model's clock, in whole steps
            self.remote_model: dict[str, bytes] = {}
            # key -> (stored at, store count), in eviction order (oldest or least used first)
            self.local_model: OrderedDict[str, tuple[float, int]] = OrderedDict()
            self.stores = 0

        def build(self) -> CachedStore:
            policy = config.make(self.side.clock)
            return CachedStoreFactory(self.side.store, self.remote, policy).build()

        # -- the model ----------------------------------------------------------------------

        def fresh(self, key: str) -> bool:
            aging = config.aging
            return key in self.local_model and (
                aging is None or self.now - self.local_model[key][0] < aging
            )

        def admitted(self, data: bytes) -> bool:
            return config.max_bytes is None or len(data) <= config.max_bytes

        def stored(self, key: str) -> None:
            self.local_model.pop(key, None)
            self.stores += 1
            self.local_model[key] = (self.now, self.stores)
            if config.depth is None:
                return
            while len(self.local_model) > config.depth or (
                config.max_bytes is not None
                and sum(len(self.remote_model[k]) for k in self.local_model) > config.max_bytes
            ):
                self.local_model.popitem(last=False)

        # -- rules ----------------------------------------------------------------------------

        @rule(key=st.sampled_from(KEYS), data=st.binary(max_size=30))
        def write(self, key: str, data: bytes) -> None:
            writes = self.cached.stats()["remote_writes"]
            self.cached.put_stream(key, io.BytesIO(data))
            assert self.cached.stats()["remote_writes"] == writes + 1
            self.remote_model[key] = data
            if self.admitted(data):
                self.stored(key)
            else:
                self.local_model.pop(key, None)

        @rule(key=st.sampled_from(KEYS))
        def read(self, key: str) -> None:
            reads = self.cached.stats()["remote_reads"]
            if key not in self.remote_model:
                with pytest.raises(KeyNotFoundError):
                    self.cached.open_read(key)
                return
            hit = self.fresh(key)
            with self.cached.open_read(key) as entry:
                assert entry.read() == self.remote_model[key]
            assert self.cached.stats()["remote_reads"] == reads + (0 if hit else 1)
            if hit:
                if config.kind == "lru":
                    self.local_model.move_to_end(key)
            elif self.admitted(self.remote_model[key]):
                self.stored(key)

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key: str) -> None:
            existed = key in self.remote_model or key in self.local_model
            assert self.cached.delete(key) == existed
            self.remote_model.pop(key, None)
            self.local_model.pop(key, None)

        @rule(key=st.sampled_from(KEYS))
        def invalidate(self, key: str) -> None:
            assert self.cached.invalidate(key) == (key in self.local_model)
            self.local_model.pop(key, None)

        @rule(steps=st.integers(1, 3))
        def advance(self, steps: int) -> None:
            self.now += steps * STEP
            self.side.advance(steps * STEP)

        @precondition(lambda self: config.aging is not None)
        @rule()
        def purge(self) -> None:
            stale = [key for key in self.local_model if not self.fresh(key)]
            assert self.cached.purge() == len(stale)
            for key in stale:
                del self.local_model[key]

        @rule()
        def restart(self) -> None:
            self.cached.close()
            self.side.reopen()
            self.cached = self.build()
            if config.kind == "lru" and not self.side.lasting:
                # Rebuilt from the store alone: recency is gone, the stored order remains.
                order = sorted(self.local_model.items(), key=lambda item: item[1][1])
                self.local_model = OrderedDict(order)

        # -- invariants -----------------------------------------------------------------------

        @invariant()
        def local_store_matches_model(self) -> None:
            held = set(self.side.store.keys())
            assert held == set(self.local_model)
            if config.depth is not None:
                assert len(held) <= config.depth
            if config.max_bytes is not None:
                assert sum(self.side.store.stat(k).size for k in held) <= config.max_bytes

        @invariant()
        def remote_holds_everything_written(self) -> None:
            held = {key: self.remote.get(key) for key in list(self.remote.keys())}
            assert held == self.remote_model

        def teardown(self) -> None:
            self.cached.close()
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
