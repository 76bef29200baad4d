"""TTLByPrefix: a different time-to-live for each part of the key space."""

from __future__ import annotations

import attrs

from cached_stores_factory import CachePolicy, EntryStat


def _positive_intervals(
    _: object, attribute: attrs.Attribute[dict[str, float]], value: dict[str, float]
) -> None:
    for prefix, seconds in value.items():
        if seconds <= 0:
            raise ValueError(f"{attribute.name}[{prefix!r}] must be > 0, not {seconds}")


@attrs.define
class TTLByPrefix(CachePolicy):
    """Entries under the longest matching prefix live that prefix's seconds; others `default`.

    Stateless: freshness is read from the entry's stored time, so it holds across restarts
    and processes with no bookkeeping.  Only `is_fresh` is overridden; every other hook keeps
    the base class's default.
    """

    intervals: dict[str, float] = attrs.field(factory=dict, validator=_positive_intervals)
    default: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))

    def interval_for(self, key: str) -> float:
        matches = [p for p in self.intervals if key.startswith(p)]
        return self.intervals[max(matches, key=len)] if matches else self.default

    def is_fresh(self, key: str, stat: EntryStat) -> bool:
        modified = stat.modified
        return modified is not None and self.clock() - modified < self.interval_for(key)
