"""attrs validators shared by the policies: counts and durations that make sense."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["count_at_least_one", "non_negative_seconds", "positive_seconds"]


def count_at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """An int >= 1 (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{attribute.name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def positive_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds > 0; infinity means "never ages"."""
    _seconds(attribute, value)
    if not value > 0:  # nan too
        raise ValueError(f"{attribute.name} must be > 0 seconds, got {value}")


def non_negative_seconds(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    """A number of seconds >= 0, where 0 means "off"."""
    _seconds(attribute, value)
    if not value >= 0:  # nan too
        raise ValueError(f"{attribute.name} must be >= 0 seconds, got {value}")


def _seconds(attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{attribute.name} must be a number of seconds, not {type(value).__name__}")
