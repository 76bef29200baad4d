"""attrs validators shared by the policies: counts and durations that make sense."""

from __future__ import annotations

import math
from typing import Any

import attrs

__all__ = ["count_at_least_one", "positive_seconds"]


def count_at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An int >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0; infinity means "never ages"."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 seconds, got {value}")
