"""Deterministic simulation of cached stores sharing one local tier and one remote.

Each seed is one schedule: a few simulated processes (each a CachedStore, the real engine)
read, write, delete and invalidate a few keys through one shared local store and one remote,
both simulated.  Every call into a store is a point where the scheduler may switch to another
process, so a seed decides the whole interleaving; processes run as greenlets on one thread,
so a seed replays exactly.  The seed also injects faults: a process crashes (its greenlet is
abandoned mid-call and a new incarnation takes its place), stalls past lease deadlines and
change marks, the lease table or the whole local state is lost (Redis restarted empty), the
local store goes down for a while, and the remote fails a call before or after applying it.

After every operation the checker holds the engine to its promise: a read never returns
bytes older than a write that completed before the read began (each write's bytes are
unique, so a read's bytes name the remote state they came from), and never bytes no write
made.  A write refused because the local store was down must have left the remote alone.

    python tests/sim.py --seeds 100000 --jobs 2     # what `make sim` runs
    python tests/sim.py --seed 1234 --trace         # replay one seed, step by step
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import random
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import IO

import greenlet

from cached_stores_factory import (
    CachedStore,
    CachePolicy,
    EntryReader,
    EntryStat,
    MemoryStore,
    errors,
)
from cached_stores_factory.errors import RemoteError, StoreError

KEYS = ("a", "b/c")
PROCESSES = 3
OPERATIONS = 6  # per process
TTL = 120.0  # longer than a change mark's hold, so expiry alone never hides a stale copy
LEASE_SECONDS = 1.0  # a holder renews it while it runs; a stalled one lets it lapse
LEASE_WAIT = 5.0
FAULT_CHANCE = 0.04  # per scheduling step

__all__ = ["Violation", "main", "run"]


class Violation(AssertionError):
    """The engine broke a promise under this seed."""


class Crashed(BaseException):
    """Thrown into a crashed process's greenlet once its seed is checked, to free it."""


class World:
    """The shared clock, stores, scheduler and history of one seed."""

    def __init__(self, seed: int, *, trace: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 1_000.0
        self.trace = trace
        self.log: list[str] = []
        self.hub = greenlet.getcurrent()
        self.remote = SimRemote(self)
        self.local = SimLocal(self)
        self.leases: dict[str, tuple[int, float]] = {}  # key -> (holder, expiry)
        self.down_until = 0.0  # the local store answers nothing before this time
        self.fail_remote = False
        # The remote's history: key -> [(sequence, bytes or None)], one state per change.
        self.history: dict[str, list[tuple[int, bytes | None]]] = {k: [(0, None)] for k in KEYS}
        self.sequence = itertools.count(1)
        self.floor: dict[str, int] = dict.fromkeys(KEYS, 0)  # newest completed write's state
        self.processes: list[Process] = []
        self.crashed: list[greenlet.greenlet] = []
        self.over = False  # set once checked: crashed greenlets then unwind without effect
        self.values = itertools.count(1)

    def clock(self) -> float:
        return self.now

    def note(self, message: str) -> None:
        if self.trace:
            print(f"{self.now:10.3f} {message}")

    def step(self) -> None:
        """A store call: the scheduler may run anyone else first."""
        if self.over:
            raise Crashed
        self.hub.switch()

    # -- the remote's history ------------------------------------------------------------

    def applied(self, key: str, data: bytes | None) -> int:
        number = next(self.sequence)
        self.history[key].append((number, data))
        return number

    def check_read(self, key: str, floor: int, result: bytes | None, what: str) -> None:
        """`result` must be a state of the remote at or after `floor`."""
        newest = self.history[key][-1][0]
        if any(number >= floor and data == result for number, data in self.history[key]):
            return
        raise Violation(
            f"seed {self.seed}: {what} of {key!r} returned {result!r}, older than a completed "
            f"write (state {floor}; the remote is at state {newest}: "
            f"{self.history[key][-1][1]!r})"
        )


class SimRemote(MemoryStore):
    """The remote: every call is a scheduling point, may fail, and is recorded in history."""

    def __init__(self, world: World) -> None:
        super().__init__(clock=world.clock)
        self.world = world
        self.writer: dict[int, int] = {}  # operation id -> state its change made

    def _call(self, what: str) -> None:
        self.world.step()
        self.world.note(f"  p{current_process().pid} remote {what}")
        if self.world.fail_remote and self.world.rng.random() < 0.5:
            raise RemoteError("simulated remote failure")

    def open_read(self, key: str) -> EntryReader:
        self._call(f"open_read {key!r}")
        entry = super().open_read(key)  # the state as the request reached the remote
        self.world.step()  # the response travels back
        return entry

    def open_read_if_changed(self, key: str, etag: str) -> EntryReader | None:
        self._call(f"open_read_if_changed {key!r}")
        entry = super().open_read(key)
        self.world.step()
        return None if entry.stat.etag == etag else entry

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        data = stream.read()
        self._call(f"put_stream {key!r}")
        number = self.world.applied(key, data)
        self.world.note(f"  remote state {number}: {key!r} = {data!r}")
        stat = super().put_stream(key, _Bytes(data), etag=f"s{number}")
        self.writer[current_operation()] = number
        self.world.step()
        if self.world.fail_remote and self.world.rng.random() < 0.3:
            raise RemoteError("simulated remote failure after the change applied")
        return stat

    def delete(self, key: str) -> bool:
        self._call(f"delete {key!r}")
        existed = super().delete(key)
        self.writer[current_operation()] = self.world.applied(key, None) if existed else 0
        self.world.step()
        return existed

    def stat(self, key: str) -> EntryStat:
        self._call(f"stat {key!r}")
        return super().stat(key)


class SimLocal(MemoryStore):
    """The shared local store: scheduling points, outages, lost state, and leases."""

    def __init__(self, world: World) -> None:
        super().__init__(clock=world.clock)
        self.world = world

    def _call(self, what: str) -> None:
        self.world.step()
        self.world.note(f"  p{current_process().pid} local {what}")
        if self.world.now < self.world.down_until:
            raise StoreError("simulated local outage")

    def lose_everything(self) -> None:
        """Redis restarted empty: entries and fences are gone."""
        self._entries.clear()
        getattr(self, "_fences", {}).clear()  # the engine before fences kept none

    def open_read(self, key: str) -> EntryReader:
        self._call(f"open_read {key!r}")
        return super().open_read(key)

    def stat(self, key: str) -> EntryStat:
        self._call(f"stat {key!r}")
        return super().stat(key)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        data = stream.read()
        self._call(f"put_stream {key!r} = {data!r} ({current_process().verb})")
        return super().put_stream(key, _Bytes(data), etag=etag)

    def put_fenced(
        self, key: str, stream: IO[bytes], *, etag: str | None, fence: str
    ) -> EntryStat | None:
        data = stream.read()
        self._call(f"put_fenced {key!r} = {data!r} ({current_process().verb})")
        return super().put_fenced(key, _Bytes(data), etag=etag, fence=fence)

    def delete(self, key: str) -> bool:
        self._call(f"delete {key!r}")
        return super().delete(key)

    def keys(self, prefix: str = "") -> Iterator[str]:
        self._call(f"keys {prefix!r}")
        return super().keys(prefix)

    def fence(self, key: str) -> str | None:
        self._call(f"fence {key!r}")
        return super().fence(key)

    def begin_change(self, key: str, *, hold: float) -> tuple[bool, str]:
        self._call(f"begin_change {key!r}")
        return super().begin_change(key, hold=hold)

    def end_change(self, key: str, mark: str) -> str | None:
        self._call(f"end_change {key!r}")
        return super().end_change(key, mark)

    def move_fences(self) -> None:
        self._call("move_fences")
        super().move_fences()

    def lease(self, key: str) -> contextlib.AbstractContextManager[object]:
        return self._lease(key)

    @contextlib.contextmanager
    def _lease(self, key: str) -> Iterator[None]:
        world, me = self.world, current_process().holder
        deadline = world.now + LEASE_WAIT
        while True:
            self._call(f"_lease {key!r}")
            holder = world.leases.get(key)
            if holder is None or holder[1] <= world.now:
                world.leases[key] = (me, world.now + LEASE_SECONDS)
                break
            if world.now >= deadline:
                raise StoreError("simulated lease wait ran out")
        try:
            yield
        finally:
            if world.leases.get(key, (None,))[0] == me:
                del world.leases[key]


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data


class SimTTL(CachePolicy):
    """Fresh for TTL seconds of simulated time."""

    def __init__(self, world: World) -> None:
        self.world = world

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        return stat.modified is not None and self.world.now - stat.modified < TTL

    def expired_for(self, key: str, stat: EntryStat) -> float:
        return float("inf") if stat.modified is None else self.world.now - stat.modified - TTL


class Process:
    """One simulated process: an engine instance and the operations it still has to run."""

    def __init__(self, world: World, pid: int, operations: list[tuple[str, str]]) -> None:
        self.world = world
        self.pid = pid
        self.operations = operations
        self.incarnation = 0
        self.stalled_until = 0.0
        self.operation = 0
        self.verb = ""
        self.restart()

    @property
    def holder(self) -> int:
        """Who holds a lease: this incarnation of the process, not a crashed one."""
        return self.pid * 1_000 + self.incarnation

    def restart(self) -> None:
        """A new incarnation; the old one's greenlet is never resumed (it crashed)."""
        if self.incarnation:
            self.world.crashed.append(self.task)
        self.incarnation += 1
        world = self.world
        self.cached = CachedStore(world.local, world.remote, SimTTL(world))
        for part in (self.cached, getattr(self.cached, "tier", None)):  # outages on sim time
            for name in ("outage", "remote_outage", "_local_outage", "_remote_outage"):
                outage = getattr(part, name, None)
                if outage is not None:
                    outage._clock = world.clock
        self.task = greenlet.greenlet(self.run)
        self.task.process = self  # type: ignore[attr-defined]

    def run(self) -> None:
        world = self.world
        while self.operations:
            verb, key = self.operations.pop(0)
            self.verb = verb
            self.operation = next(_OPERATIONS)
            floor = world.floor[key]
            world.note(f"p{self.pid}.{self.incarnation} {verb} {key}")
            result = self.perform(verb, key)
            if verb in ("read", "read after") and result is not FAILED:
                world.check_read(key, floor, result, f"p{self.pid} {verb}")

    def perform(self, verb: str, key: str) -> bytes | object | None:
        world, cached = self.world, self.cached
        try:
            if verb in ("read", "read after"):
                return cached.get(key, None)  # type: ignore[no-any-return]
            if verb == "write":
                data = f"{key}={next(world.values)}".encode()
                cached.put(key, data)
            elif verb == "delete":
                cached.delete(key)
            elif verb in ("outside write", "outside write, clear"):  # then tells the cache
                data = f"{key}={next(world.values)}".encode()
                world.remote.put_stream(key, _Bytes(data))  # type: ignore[arg-type]
                if verb == "outside write":
                    cached.invalidate(key)
                else:
                    cached.clear()
            elif verb == "invalidate":
                cached.invalidate(key)
            elif verb == "purge":
                cached.purge()
        except (RemoteError, StoreError) as exc:
            world.note(f"p{self.pid} {verb} {key} failed: {exc}")
            refused = isinstance(exc, _REFUSED) and not getattr(exc, "remote_changed", False)
            if refused and self.operation in world.remote.writer:
                raise Violation(
                    f"seed {world.seed}: a write refused for a local outage changed the remote"
                ) from None
            return FAILED
        else:
            if verb in ("write", "delete", "outside write", "outside write, clear"):
                state = world.remote.writer.get(self.operation, 0)
                world.floor[key] = max(world.floor[key], state)
        return None


FAILED = object()  # an operation that raised: a read with no bytes to check
_REFUSED = getattr(errors, "LocalStoreUnavailableError", ())  # the engine before fences had none


_OPERATIONS = itertools.count(1)


def current_process() -> Process:
    return greenlet.getcurrent().process  # type: ignore[attr-defined, no-any-return]


def current_operation() -> int:
    task = greenlet.getcurrent()
    return task.process.operation if hasattr(task, "process") else 0


# "outside write, clear" took the place of a plain clear (its superset), so that the seeds
# of every schedule without one stay as they were.
VERBS = (
    *("read", "read", "read", "write", "write", "delete", "outside write"),
    *("invalidate", "purge", "outside write, clear"),
)


def run(seed: int, *, trace: bool = False) -> None:
    """Run one seed; raise Violation if the engine broke a promise."""
    world = World(seed, trace=trace)
    rng = world.rng
    for pid in range(PROCESSES):
        operations = [(rng.choice(VERBS), rng.choice(KEYS)) for _ in range(OPERATIONS)]
        world.processes.append(Process(world, pid, operations))
    try:
        _schedule(world)
        _quiet_check(world)
    finally:
        world.over = True
        for task in world.crashed:
            with contextlib.suppress(Crashed):
                task.throw(Crashed)


def _schedule(world: World) -> None:
    rng = world.rng
    while True:
        alive = [p for p in world.processes if not p.task.dead]
        if not alive:
            return
        runnable = [p for p in alive if p.stalled_until <= world.now]
        if not runnable:
            world.now = min(p.stalled_until for p in alive)
            continue
        if rng.random() < FAULT_CHANCE:
            _inject(world, rng.choice(alive))
            continue
        process = rng.choice(runnable)
        for key, (holder, _expiry) in list(world.leases.items()):  # holders renew
            if holder == process.holder:
                world.leases[key] = (holder, world.now + LEASE_SECONDS)
        process.task.switch()
        world.now += rng.uniform(0.0, 0.05)


def _inject(world: World, process: Process) -> None:
    rng = world.rng
    fault = rng.choice(("crash", "stall", "stall", "leases", "outage", "lost", "remote"))
    world.note(f"fault: {fault} (p{process.pid})")
    if fault == "crash":
        process.restart()  # the old greenlet is never resumed: nothing of it runs again
    elif fault == "stall":
        process.stalled_until = world.now + rng.choice((0.5, 2.0, 30.0, 90.0))
    elif fault == "leases":
        world.leases.clear()
    elif fault == "outage":
        world.down_until = world.now + rng.uniform(0.1, 3.0)
    elif fault == "lost":
        world.local.lose_everything()
        world.leases.clear()
    else:
        world.fail_remote = not world.fail_remote


def _quiet_check(world: World) -> None:
    """With every fault over, a new process reads each key: still nothing older than a write."""
    world.fail_remote = False
    world.down_until = 0.0
    world.now += 5.0  # past any outage back-off, not past a fresh copy's TTL
    reader = Process(world, PROCESSES, [("read after", key) for key in KEYS])
    world.processes = [reader]
    _schedule(world)


def _run_range(arguments: tuple[int, int]) -> list[str]:
    first, count = arguments
    logging.disable(logging.CRITICAL)  # outages are the point here, not news
    failures = []
    for seed in range(first, first + count):
        try:
            run(seed)
        except Exception as exc:  # a Violation, or the engine failing in a way it must not
            failures.append(f"seed {seed}: {exc!r}\n    replay: {replay(seed)}")
    return failures


def replay(seed: int) -> str:
    """The one-line command that replays `seed`, step by step."""
    return f"python tests/sim.py --seed {seed} --trace"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10_000, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--trace", action="store_true", help="print every step of a replay")
    args = parser.parse_args(argv)
    if args.seed is not None:
        try:
            run(args.seed, trace=args.trace)
        except Violation as exc:
            print(exc)
            return 1
        print(f"seed {args.seed}: no violation")
        return 0
    started = time.monotonic()
    chunk = max(1, min(1_000, args.seeds // max(1, args.jobs * 8)))
    ranges = [
        (s, min(chunk, args.first + args.seeds - s))
        for s in range(args.first, args.first + args.seeds, chunk)
    ]
    with ProcessPoolExecutor(args.jobs) as pool:
        failures = [f for found in pool.map(_run_range, ranges) for f in found]
    took = time.monotonic() - started
    for failure in failures[:20]:
        print(failure)
    print(f"{args.seeds} seeds, {len(failures)} violations, {took:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
