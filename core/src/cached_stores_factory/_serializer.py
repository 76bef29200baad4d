"""Serializers turn the value API's Python objects into bytes and back.

The contract and the default (bytes) serializer.  The others are in `_formats`, imported when
first used, so a cold start does not build their classes (docs/performance.md).
"""

from __future__ import annotations

import abc
from typing import Any

from .errors import SerializerError

__all__ = ["BytesSerializer", "Serializer"]


class Serializer(abc.ABC):
    """Required: `dumps(value) -> bytes` and `loads(data) -> value`, inverse of each other."""

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes:
        """Encode `value`; raise SerializerError for a value this serializer cannot hold."""

    @abc.abstractmethod
    def loads(self, data: bytes) -> Any:
        """Decode bytes written by `dumps`; raise SerializerError for bytes it cannot read."""


class BytesSerializer(Serializer):
    """The default: values are bytes, stored as they are.  It has no settings, so every one is
    equal to every other."""

    def __repr__(self) -> str:
        return "BytesSerializer()"

    def __eq__(self, other: object) -> bool:
        return type(other) is BytesSerializer

    def __hash__(self) -> int:
        return hash(BytesSerializer)

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise SerializerError(
            f"the 'bytes' serializer stores bytes, not {type(value).__name__}; "
            "configure serializer = 'json' or 'text' to store other values"
        )

    def loads(self, data: bytes) -> bytes:
        return data
