"""Deterministic simulation of cached stores sharing one local tier and one remote.

Each seed is one schedule: a few simulated processes (each a CachedStore, the real engine)
read, write, delete and invalidate a few keys through one shared local store and one remote,
both simulated.  Every call into a store is a point where the scheduler may switch to another
process, so a seed decides the whole interleaving; processes run as greenlets on one thread,
so a seed replays exactly.  The seed also injects faults: a process crashes (its greenlet is
abandoned mid-call and a new incarnation takes its place), stalls past change marks, or is
stopped whole (SIGSTOP: its lease renewer too), the lease keys or the whole local state are
lost (Redis restarted empty), Redis pauses (every lease call fails for a while), a lease's
SET is applied though its caller got a timeout, the local store goes down for a while, and
the remote fails a call before or after applying it.

Leases are the real RedisLease (redis-py's Lock) over a simulated Redis client; its renewal
thread runs as a greenlet of its process, and redis-py's clock is the simulated one.

After every operation the checker holds the engine to its promise: a read never returns
bytes older than a write that completed before the read began (each write's bytes are
unique, so a read's bytes name the remote state they came from), and never bytes no write
made.  A write refused because the local store was down must have left the remote alone.
Every lease call is checked too: a lease nobody holds never blocks a waiter for more than
BLOCK_BOUND seconds, and two live holders never hold one key's lease unless the first one's
lapsed while Redis paused, lost its keys, or its process was stopped.

A ranged seed (`--ranged`, a seed space of its own: seed N with and without it are two
schedules) writes values of several blocks and adds a verb, "ranged read": it opens the key
through `partials.open` (reading it whole when that says so) and reads a few ranges, each
checked as a read is, at its offset, against the remote's states.

    python tests/sim.py --seeds 100000 --jobs 2     # what `make sim` runs, then:
    python tests/sim.py --ranged --seeds 50000 --jobs 2
    python tests/sim.py --seed 1234 --trace         # replay one seed, step by step
    python tests/sim.py --seed 8380 --trace --ranged
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import io
import itertools
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from types import SimpleNamespace
from typing import IO, Any

import greenlet
import redis.lock
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cached_stores_factory import (
    CachedStore,
    CachePolicy,
    EntryReader,
    EntryStat,
    MemoryStore,
    errors,
)
from cached_stores_factory.errors import RemoteError, StoreError
from cached_stores_factory_redis import _lease

KEYS = ("a", "b/c")
PROCESSES = 3
OPERATIONS = 6  # per process
TTL = 120.0  # longer than a change mark's hold, so expiry alone never hides a stale copy
BLOCK_BOUND = 3.0  # the longest a lease nobody holds may keep a waiter (the lease is 1.5 s)
LAPSE_SLACK = 0.5  # a lease may lapse this long after a pause or stop ends, before it renews
FAULT_CHANCE = 0.04  # per scheduling step
BLOCK_SIZE = 4  # ranged reads: a value of a ranged seed spans several blocks ...
WHOLE_LIMIT = 16  # ... and is larger than this, so it is read in blocks

__all__ = ["Violation", "main", "run"]


class Violation(AssertionError):
    """The engine broke a promise under this seed."""


class Crashed(BaseException):
    """Thrown into a crashed process's greenlet once its seed is checked, to free it."""


class World:
    """The shared clock, stores, scheduler and history of one seed."""

    def __init__(self, seed: int, *, trace: bool = False, ranged: bool = False) -> None:
        self.seed = seed
        self.ranged = ranged  # a ranged seed: long values, and the "ranged read" verb
        self.rng = random.Random(seed)
        self.now = 1_000.0
        self.trace = trace
        self.log: list[str] = []
        self.hub = greenlet.getcurrent()
        self.remote = SimRemote(self)
        self.local = SimLocal(self)
        self.redis = SimRedis(self)
        self.keys: dict[str, tuple[bytes, float]] = {}  # Redis's lease keys: (token, expiry)
        self.tokens: dict[bytes, Token] = {}  # every token a SET applied, and who holds it
        self.paused_until = 0.0  # Redis answers no lease call before this time
        self.pauses: list[tuple[float, float]] = []
        self.ambiguous = False  # the next SET that applies answers with a timeout
        self.violation: str | None = None  # found inside a call that may swallow exceptions
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

    def sleep(self, seconds: float) -> None:
        """Sleep in simulated time: the scheduler runs the others until then."""
        greenlet.getcurrent().wake_at = self.now + seconds  # type: ignore[attr-defined]
        self.step()

    def fail(self, message: str) -> None:
        """Note a violation; the scheduler raises it (the lease's own code catches Exception)."""
        if self.violation is None:
            self.violation = f"seed {self.seed}: {message}"

    # -- leases --------------------------------------------------------------------------

    def lose_leases(self) -> None:
        """Redis lost its keys: their holders' leases are gone through no fault of theirs."""
        for token, _expiry in self.keys.values():
            self.tokens[token].excused = True
        self.keys.clear()

    def check_blocked(self, token: Token) -> None:
        """The current process waits on `token`: it must not wait long if nobody holds it."""
        if token.orphaned_at is None:
            return
        since = max(token.orphaned_at, greenlet.getcurrent().waiting_since)  # type: ignore[attr-defined]
        if self.now - since > BLOCK_BOUND:
            self.fail(
                f"a lease on {token.name!r} that nobody holds ({token.why}) blocked "
                f"p{current_process().pid} for {self.now - since:.1f} s"
            )

    def check_single_holder(self, token: Token) -> None:
        """`token` was just taken: any other live holder's lease must have lapsed excusably."""
        for other in self.tokens.values():
            if other is token or other.name != token.name or other.orphaned_at is not None:
                continue
            assert other.holder is not None and token.holder is not None
            windows = [*self.pauses, *other.holder.stops]
            if other.excused or any(s <= other.expiry <= e + LAPSE_SLACK for s, e in windows):
                continue
            self.fail(
                f"p{token.holder.pid} took the lease on {token.name!r} while "
                f"p{other.holder.pid} still held it (its lease lapsed unrenewed at "
                f"{other.expiry:.3f}, with Redis up and its process running)"
            )

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

    def check_ranges(self, key: str, floor: int, ranges: list[tuple[int, bytes]]) -> None:
        """Each range read, (offset, bytes), must match a state at or after `floor` there."""
        for start, data in ranges:
            if not any(
                number >= floor and value is not None and value[start : start + len(data)] == data
                for number, value in self.history[key]
            ):
                raise Violation(
                    f"seed {self.seed}: p{current_process().pid} read {data!r} at {start} of "
                    f"{key!r}, which no state at or after {floor} (a completed write) holds "
                    f"there; the remote is at {self.history[key][-1]!r}"
                )

    def value(self, key: str) -> bytes:
        """A new write's bytes, unique to it; in a ranged seed several blocks long."""
        tag = f"{key}={next(self.values)}"
        return (tag if not self.ranged else f"{tag};" * 4).encode()


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

    def open_range(
        self, key: str, start: int, end: int, *, if_match: str | None = None
    ) -> EntryReader:
        """Bytes [start, end) of the state the request reached, if it is `if_match`'s."""
        self._call(f"open_range {key!r} [{start}, {end}) if_match={if_match}")
        entry = super().open_read(key)
        self.world.step()
        if if_match is not None and entry.stat.etag != if_match:
            raise errors.EntryChangedError(key, if_match, entry.stat.etag)
        return EntryReader(io.BytesIO(entry.read()[start:end]), entry.stat)


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

    def put(self, key: str, data: bytes) -> None:
        self._call(f"put {key!r} = {data!r} ({current_process().verb})")
        super().put(key, data)

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
        return self._held(
            _lease.RedisLease(
                self.world.redis,
                f"csf-lease:{key}",
                timeout=_lease.DEFAULT_LEASE_SECONDS,  # the version's own default
                where="sim",
            )
        )

    @contextlib.contextmanager
    def _held(self, lease: _lease.RedisLease) -> Iterator[None]:
        """The real lease, entered; this process holds its token until its block ends.

        Its exit, which may stall, stops the renewer first: from then on the lease is free to
        lapse, and a lease left behind (its release failed or has yet to run) is nobody's.
        """
        world = self.world
        greenlet.getcurrent().waiting_since = world.now  # type: ignore[attr-defined]
        with lease:
            token = world.tokens[lease._lock.local.token]
            try:
                yield
            finally:
                token.orphan(world.now, "its holder's block ended; the key was not deleted")


@dataclasses.dataclass
class Token:
    """A lease token that a SET applied, and whose `with` block holds it (None: nobody's)."""

    name: str
    holder: Process | None
    expiry: float
    orphaned_at: float | None = None  # since when nobody holds it
    why: str = ""
    excused: bool = False  # Redis lost it while held

    def orphan(self, now: float, why: str) -> None:
        if self.orphaned_at is None:
            self.orphaned_at, self.why = now, why


class SimRedis:
    """A Redis client with what redis-py's Lock uses: SET NX PX, GET and its three scripts.

    Every call is a scheduling point and fails while Redis is paused; the keys live in the
    world, with expiries in simulated time.
    """

    def __init__(self, world: World) -> None:
        self.world = world

    def lock(self, name: str, **options: Any) -> redis.lock.Lock:
        return _SimLock(self, name, **options)

    def register_script(self, script: str) -> Callable[..., int]:
        # A partial, not a function: Lock keeps it on the class and calls it through `self`.
        return functools.partial(_run_script, _LOCK_SCRIPTS[script])

    def _call(self, what: str) -> None:
        world = self.world
        world.step()
        world.note(f"  p{current_process().pid} redis {what}")
        if world.now < world.paused_until:
            raise world.rng.choice((RedisConnectionError, RedisTimeoutError))("Redis paused")

    def _token(self, name: str) -> bytes | None:
        held = self.world.keys.get(name)
        if held is None or held[1] <= self.world.now:
            self.world.keys.pop(name, None)
            return None
        return held[0]

    def get(self, name: str) -> bytes | None:
        self._call(f"get {name!r}")
        return self._token(name)

    def set(
        self, name: str, value: bytes, *, nx: bool = False, px: int | None = None
    ) -> bool | None:
        self._call(f"set {name!r} nx px={px}")
        world = self.world
        assert nx and px, "a Lock with a timeout only sends SET NX PX"
        blocking = self._token(name)
        if blocking is not None:
            world.check_blocked(world.tokens[blocking])
            return None
        expiry = world.now + px / 1000
        world.keys[name] = (value, expiry)
        token = world.tokens[value] = Token(name, current_process(), expiry)
        if world.ambiguous:
            world.ambiguous = False
            token.orphan(world.now, "its SET was applied, but its caller timed out")
            raise RedisTimeoutError("the SET was applied; its answer was lost")
        world.check_single_holder(token)
        return True

    def script(self, kind: str, name: str, token: bytes, *args: Any) -> int:
        """Lock's Lua scripts by their semantics: each acts only if `name` holds `token`."""
        self._call(f"{kind} {name!r}")
        world = self.world
        if self._token(name) != token:
            return 0
        if kind == "release":
            del world.keys[name]
            return 1
        milliseconds, base = int(args[0]), world.now
        if kind == "extend" and args[1] == "0":  # add to the time left rather than replace it
            base = world.keys[name][1]
        expiry = world.tokens[token].expiry = base + milliseconds / 1000
        world.keys[name] = (token, expiry)
        return 1


class _SimLock(redis.lock.Lock):
    """The real Lock; only its script handles are its own (Lock caches them on the class)."""

    lua_release = lua_extend = lua_reacquire = None


_LOCK_SCRIPTS = {
    redis.lock.Lock.LUA_RELEASE_SCRIPT: "release",
    redis.lock.Lock.LUA_EXTEND_SCRIPT: "extend",
    redis.lock.Lock.LUA_REACQUIRE_SCRIPT: "reacquire",
}


def _run_script(kind: str, *, keys: list[str], args: list[Any], client: SimRedis) -> int:
    return client.script(kind, keys[0], *args)


class SimEvent:
    """threading.Event for greenlets: wait() sleeps in simulated time, set() wakes waiters."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.flag = False
        self.waiters: list[greenlet.greenlet] = []

    def set(self) -> None:
        self.flag = True
        for task in self.waiters:
            task.wake_at = self.world.now  # type: ignore[attr-defined]

    def wait(self, timeout: float | None = None) -> bool:
        if not self.flag:
            task = greenlet.getcurrent()
            self.waiters.append(task)
            try:
                self.world.sleep(math.inf if timeout is None else timeout)
            finally:
                self.waiters.remove(task)
        return self.flag


class SimThread:
    """threading.Thread as a greenlet of the process that starts it: stopped, crashed with it."""

    def __init__(
        self,
        world: World,
        *,
        target: Callable[..., object],
        args: tuple[object, ...] = (),
        name: str = "",
        daemon: bool = False,
    ) -> None:
        self.target, self.args = target, args
        self.done = SimEvent(world)
        self.task = greenlet.greenlet(self._run, parent=world.hub)
        self.task.wake_at = world.now  # type: ignore[attr-defined]

    def start(self) -> None:
        process = current_process()
        self.task.process = process  # type: ignore[attr-defined]
        self.threads = process.threads  # this incarnation's: a crash starts a new list
        self.threads.append(self.task)

    def join(self) -> None:
        self.done.wait()

    def _run(self) -> None:
        try:
            self.target(*self.args)
        finally:
            self.threads.remove(self.task)
            self.done.set()


@contextlib.contextmanager
def _simulated_threads_and_clock(world: World) -> Iterator[None]:
    """The lease's renewal thread runs as a greenlet, and redis-py's Lock sleeps in world time."""
    saved = _lease.threading, redis.lock.mod_time
    _lease.threading = SimpleNamespace(  # type: ignore[assignment]
        Event=lambda: SimEvent(world),
        Thread=lambda **options: SimThread(world, **options),
    )
    redis.lock.mod_time = SimpleNamespace(  # type: ignore[assignment]
        monotonic=world.clock, time=world.clock, sleep=world.sleep
    )
    try:
        yield
    finally:
        _lease.threading, redis.lock.mod_time = saved


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
        self.stalled_until = 0.0  # its operations wait; its lease renewer runs
        self.stopped_until = 0.0  # SIGSTOP: nothing of it runs, its renewer neither
        self.stops: list[tuple[float, float]] = []
        self.threads: list[greenlet.greenlet] = []  # its lease renewers
        self.operation = 0
        self.verb = ""
        self.restart()

    def restart(self) -> None:
        """A new incarnation; the old one's greenlets are never resumed (it crashed)."""
        world = self.world
        if self.incarnation:
            world.crashed += [self.task, *self.threads]
            self.threads = []
            for token in world.tokens.values():
                if token.holder is self:
                    token.orphan(world.now, "its holder crashed")
        self.incarnation += 1
        self.cached = CachedStore(world.local, world.remote, SimTTL(world))
        self.cached.partials.block_size = BLOCK_SIZE
        self.cached.partials.whole_limit = WHOLE_LIMIT
        for part in (self.cached, getattr(self.cached, "tier", None)):  # outages on sim time
            for name in ("outage", "remote_outage", "_local_outage", "_remote_outage"):
                outage = getattr(part, name, None)
                if outage is not None:
                    outage._clock = world.clock
        self.task = greenlet.greenlet(self.run)
        self.task.process = self  # type: ignore[attr-defined]
        self.task.wake_at = 0.0  # type: ignore[attr-defined]

    def ready_at(self, task: greenlet.greenlet) -> float:
        """When `task` may run: a stall holds only the operations, a stop everything."""
        at = max(task.wake_at, self.stopped_until)  # type: ignore[attr-defined]
        return max(at, self.stalled_until) if task is self.task else at

    def run(self) -> None:
        world = self.world
        while self.operations:
            verb, key = self.operations.pop(0)
            self.verb = verb
            self.operation = next(_OPERATIONS)
            floor = world.floor[key]
            world.note(f"p{self.pid}.{self.incarnation} {verb} {key}")
            result = self.perform(verb, key)
            if isinstance(result, list):
                world.check_ranges(key, floor, result)
            elif verb in ("read", "read after", "ranged read") and result is not FAILED:
                world.check_read(key, floor, result, f"p{self.pid} {verb}")

    def perform(self, verb: str, key: str) -> bytes | list[tuple[int, bytes]] | object | None:
        world, cached = self.world, self.cached
        try:
            if verb in ("read", "read after"):
                return cached.get(key, None)  # type: ignore[no-any-return]
            if verb == "ranged read":
                return self.read_ranges(key)
            if verb == "write":
                data = world.value(key)
                cached.put(key, data)
            elif verb == "delete":
                cached.delete(key)
            elif verb in ("outside write", "outside write, clear"):  # then tells the cache
                data = world.value(key)
                world.remote.put_stream(key, _Bytes(data))  # type: ignore[arg-type]
                if verb == "outside write":
                    cached.invalidate(key)
                else:
                    cached.clear()
            elif verb == "invalidate":
                cached.invalidate(key)
            elif verb == "purge":
                cached.purge()
        except errors.EntryChangedError as exc:
            if verb != "ranged read":
                raise
            world.note(f"p{self.pid} {verb} {key}: the object changed: {exc}")
            return FAILED
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

    def read_ranges(self, key: str) -> bytes | list[tuple[int, bytes]] | None:
        """A few ranges of `key` through a ranged reader: [(offset, bytes)]; read whole (its
        bytes) when the engine says so, None if missing."""
        world = self.world
        try:
            entry = self.cached.partials.open(key)
        except errors.KeyNotFoundError:
            return None
        if entry is None:
            return self.cached.get(key, None)  # type: ignore[no-any-return]
        ranges = []
        with entry:
            for _ in range(world.rng.randint(1, 3)):
                start = world.rng.randrange(entry.stat.size)
                entry.stream.seek(start)
                ranges.append((start, entry.stream.read(world.rng.randint(1, 3 * BLOCK_SIZE))))
                world.note(f"p{self.pid} ranged read {key} at {start}: {ranges[-1][1]!r}")
        return ranges


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
RANGED_VERBS = (*VERBS, "ranged read", "ranged read", "ranged read")  # a ranged seed's


def run(seed: int, *, trace: bool = False, ranged: bool = False) -> None:
    """Run one seed; raise Violation if the engine broke a promise.

    A ranged seed (a seed space of its own) writes values of several blocks and also reads
    ranges of them; a seed without stays the schedule it always was.
    """
    world = World(seed, trace=trace, ranged=ranged)
    rng = world.rng
    verbs = RANGED_VERBS if ranged else VERBS
    for pid in range(PROCESSES):
        operations = [(rng.choice(verbs), rng.choice(KEYS)) for _ in range(OPERATIONS)]
        world.processes.append(Process(world, pid, operations))
    # No garbage collection mid-seed: what a weak reference still holds (the ranged reads'
    # partial entries in a reference cycle) must not depend on the seeds run before.
    collecting = gc.isenabled()
    gc.disable()
    with _simulated_threads_and_clock(world):
        try:
            _schedule(world)
            _quiet_check(world)
        finally:
            world.over = True
            running = (t for p in world.processes for t in (p.task, *p.threads))
            for task in [*world.crashed, *running]:
                with contextlib.suppress(Crashed):
                    task.throw(Crashed)
            if collecting:
                gc.enable()


def _schedule(world: World) -> None:
    rng = world.rng
    while True:
        alive = [p for p in world.processes if not p.task.dead]
        if not alive:
            return
        now = world.now
        ready = [p.task for p in alive if p.ready_at(p.task) <= now]
        renewers = [t for p in alive if p.threads for t in p.threads if p.ready_at(t) <= now]
        if not ready and not renewers:
            world.now = min(p.ready_at(t) for p in alive for t in (p.task, *p.threads))
            continue
        if rng.random() < FAULT_CHANCE:
            _inject(world, rng.choice(alive))
            continue
        # A renewer goes first half the time: a thread starved for a second of simulated
        # time would lapse its lease for the scheduler's sake, not the lease's.
        task = rng.choice(renewers if renewers and rng.random() < 0.5 else ready + renewers)
        task.switch()
        if world.violation is not None:
            raise Violation(world.violation)
        world.now += rng.uniform(0.0, 0.05)


FAULTS = (
    *("crash", "stall", "stall", "stop", "leases", "outage", "lost", "remote"),
    *("pause", "ambiguous"),
)


def _inject(world: World, process: Process) -> None:
    rng = world.rng
    fault = rng.choice(FAULTS)
    world.note(f"fault: {fault} (p{process.pid})")
    if fault == "crash":
        process.restart()  # the old greenlet is never resumed: nothing of it runs again
    elif fault == "stall":
        process.stalled_until = world.now + rng.choice((0.5, 2.0, 30.0, 90.0))
    elif fault == "stop":  # SIGSTOP, later SIGCONT
        process.stopped_until = world.now + rng.choice((0.5, 2.0, 30.0))
        process.stops.append((world.now, process.stopped_until))
    elif fault == "leases":
        world.lose_leases()
    elif fault == "outage":
        world.down_until = world.now + rng.uniform(0.1, 3.0)
    elif fault == "lost":
        world.local.lose_everything()
        world.lose_leases()
    elif fault == "pause":
        world.paused_until = world.now + rng.uniform(0.1, 3.0)
        world.pauses.append((world.now, world.paused_until))
    elif fault == "ambiguous":
        world.ambiguous = True
    else:
        world.fail_remote = not world.fail_remote


def _quiet_check(world: World) -> None:
    """With every fault over, a new process reads each key: still nothing older than a write."""
    world.fail_remote = False
    world.down_until = 0.0
    world.ambiguous = False
    world.now += 5.0  # past any outage back-off, not past a fresh copy's TTL
    reader = Process(world, PROCESSES, [("read after", key) for key in KEYS])
    world.processes = [reader]
    _schedule(world)


def _run_range(arguments: tuple[int, int], ranged: bool = False) -> list[str]:
    first, count = arguments
    logging.disable(logging.CRITICAL)  # outages are the point here, not news
    failures = []
    for seed in range(first, first + count):
        try:
            run(seed, ranged=ranged)
        except Exception as exc:  # a Violation, or the engine failing in a way it must not
            failures.append(f"seed {seed}: {exc!r}\n    replay: {replay(seed, ranged)}")
    return failures


def replay(seed: int, ranged: bool = False) -> str:
    """The one-line command that replays `seed`, step by step."""
    return f"python tests/sim.py --seed {seed} --trace" + (" --ranged" if ranged else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10_000, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--trace", action="store_true", help="print every step of a replay")
    parser.add_argument("--ranged", action="store_true", help="ranged seeds: read in blocks too")
    args = parser.parse_args(argv)
    if args.seed is not None:
        try:
            run(args.seed, trace=args.trace, ranged=args.ranged)
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
        runner = functools.partial(_run_range, ranged=args.ranged)
        failures = [f for found in pool.map(runner, ranges) for f in found]
    took = time.monotonic() - started
    for failure in failures[:20]:
        print(failure)
    kind = "ranged seeds" if args.ranged else "seeds"
    print(f"{args.seeds} {kind}, {len(failures)} violations, {took:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
