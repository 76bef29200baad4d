"""The engine's deterministic simulation (tests/sim.py), as `make test` runs it.

`make sim` runs 100,000 seeds and 50,000 ranged ones; here a few thousand and a few hundred,
and the seeds that found bugs in the engine before fences, in the Redis lease before it was
bounded and in ranged reads before partial entries were fenced, each kept as a regression
test.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import sim

# What each seed did to the engine before fences (a stale read after a completed write).
# Refound after the simulation took up the real RedisLease and `clear()`
# after an outside write, which changed every schedule; each fails on that engine.
FOUND = {
    209: "a write whose lease Redis lost stored its bytes over another process's delete",
    106: "a delete without its lease (Redis paused): a write in flight stored its copy after",
    2428: "a delete during a local outage left the old copy for another process",
    456: "an invalidation lost to a write already in flight",
    2564: "an invalidation after an outside write lost to a fetch already in flight",
}

# What each seed did to the Redis lease before it was bounded and renewed until released:
LEASE_FOUND = {
    2: "a SET NX PX that timed out was applied: a lease nobody held blocked a reader 3.1 s "
    "(its 30 s expiry would have blocked the key that long)",
    25438: "one renewal failed in a Redis pause and the renewer stopped: the lease lapsed "
    "under its stalled holder, and another process took it while the holder still held it",
}


# What each ranged seed (`--ranged`: ranged reads too) did to the engine before partial
# entries were fenced:
RANGED_FOUND = {
    220: "an object deleted while a reader read it in ranges: KeyNotFoundError from a read of "
    "the open reader, not EntryChangedError",
    8380: "a ranged reader stored the old version's manifest and blocks while a stalled write "
    "ran (after it dropped the partial entry); a ranged read after the write read them",
}


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.CRITICAL)  # every seed logs its simulated outages
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("seed", sorted(FOUND | LEASE_FOUND))
def test_a_seed_that_found_a_bug_passes(seed: int) -> None:
    sim.run(seed)


@pytest.mark.parametrize("seed", sorted(RANGED_FOUND))
def test_a_ranged_seed_that_found_a_bug_passes(seed: int) -> None:
    sim.run(seed, ranged=True)


def test_a_few_thousand_seeds_pass() -> None:
    failures = sim._run_range((0, 3_000))
    assert not failures, "\n".join(failures[:5])


def test_a_few_hundred_ranged_seeds_pass() -> None:
    failures = sim._run_range((0, 500), ranged=True)
    assert not failures, "\n".join(failures[:5])


def test_the_checker_catches_a_stale_range() -> None:
    """A ranged seed fails when the remote's ranges are of its oldest bytes, whatever If-Match."""
    original = sim.SimRemote.open_range

    def oldest(
        self: sim.SimRemote, key: str, start: int, end: int, *, if_match: str | None
    ) -> sim.EntryReader:
        self._call(f"open_range {key!r} (the oldest bytes)")
        first = next(data for _, data in self.world.history[key] if data is not None)
        stat = sim.MemoryStore.stat(self, key)._replace(etag=if_match)
        return sim.EntryReader(io.BytesIO(first[start:end]), stat)

    sim.SimRemote.open_range = oldest  # type: ignore[method-assign]
    try:
        failures = sim._run_range((0, 100), ranged=True)
    finally:
        sim.SimRemote.open_range = original  # type: ignore[method-assign]
    assert failures
    assert "which no state at or after" in failures[0]
    assert "replay: python tests/sim.py --seed " in failures[0] and "--ranged" in failures[0]


def test_the_checker_catches_a_lease_that_blocks_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease nobody holds (its SET timed out, yet applied) must not block a key for 30 s."""
    monkeypatch.setattr(sim._lease, "DEFAULT_LEASE_SECONDS", 30.0)  # the old default
    failures = sim._run_range((0, 300))
    assert any("that nobody holds (its SET was applied" in failure for failure in failures)


def test_the_checker_catches_two_holders_of_a_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewer that gives up (the old one did after one failure) lets a held lease lapse."""
    monkeypatch.setattr(sim._lease.RedisLease, "_renew_once", lambda self, interval: None)
    failures = sim._run_range((0, 300))
    assert any("still held it (its lease lapsed unrenewed" in failure for failure in failures)


def test_a_replay_prints_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["--seed", "3959", "--trace"]) == 0
    out = capsys.readouterr().out
    assert "local fence 'b/c'" in out and "remote open_read 'b/c'" in out
    assert out.strip().endswith("seed 3959: no violation")
