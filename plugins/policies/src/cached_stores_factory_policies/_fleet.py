"""Counters summed over a fleet: what this process's counters grew by, taken in batches."""

from __future__ import annotations

from collections.abc import Callable, Mapping

__all__ = ["CounterDeltas"]


class CounterDeltas:
    """Takes what a process's counters grew by since the last take.

    A ledger calls `take()` when it writes anyway (a flush, a transaction, close), so the hit
    path never pays for fleet-wide counts.  Callers serialize `take()` (the ledger's lock).
    """

    def __init__(self) -> None:
        self._snapshot: Callable[[], Mapping[str, int]] | None = None
        self._taken: dict[str, int] = {}

    def attach(self, snapshot: Callable[[], Mapping[str, int]]) -> None:
        self._snapshot = snapshot
        self._taken = dict(snapshot())

    def take(self) -> dict[str, int]:
        """The growth of every counter since the last take (those that grew only)."""
        if self._snapshot is None:
            return {}
        current = dict(self._snapshot())
        grown = {
            name: value - self._taken.get(name, 0)
            for name, value in current.items()
            if value != self._taken.get(name, 0)
        }
        self._taken = current
        return grown

    def forget(self) -> None:
        """Count from now on only: a forked child leaves what it inherited to its parent."""
        if self._snapshot is not None:
            self._taken = dict(self._snapshot())
