"""Serializers turn the value API's Python objects into bytes and back."""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

from .errors import SerializerError, UnsafeSerializerError

__all__ = [
    "BytesSerializer",
    "JsonSerializer",
    "PickleSerializer",
    "Serializer",
    "TextSerializer",
]


class Serializer(abc.ABC):
    """Required: `dumps(value) -> bytes` and `loads(data) -> value`, inverse of each other."""

    @abc.abstractmethod
    def dumps(self, value: Any) -> bytes:
        """Encode `value`; raise SerializerError for a value this serializer cannot hold."""

    @abc.abstractmethod
    def loads(self, data: bytes) -> Any:
        """Decode bytes written by `dumps`; raise SerializerError for bytes it cannot read."""


@dataclasses.dataclass(frozen=True, slots=True)
class BytesSerializer(Serializer):
    """The default: values are bytes, stored as they are."""

    def dumps(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise SerializerError(
            f"the 'bytes' serializer stores bytes, not {type(value).__name__}; "
            "configure serializer = 'json' or 'text' to store other values"
        )

    def loads(self, data: bytes) -> bytes:
        return data


@dataclasses.dataclass(frozen=True, slots=True)
class TextSerializer(Serializer):
    """Values are str, stored encoded."""

    encoding: str = "utf-8"

    def __post_init__(self) -> None:
        import codecs  # already loaded by the interpreter; checks the name at config time

        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"unknown encoding {self.encoding!r}") from None

    def dumps(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise SerializerError(f"the 'text' serializer stores str, not {type(value).__name__}")
        return value.encode(self.encoding)

    def loads(self, data: bytes) -> str:
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise SerializerError(f"entry is not valid {self.encoding} text: {exc}") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class JsonSerializer(Serializer):
    """Values are JSON documents: safe to load from a cache that others can write."""

    def dumps(self, value: Any) -> bytes:
        import json  # imported by the serializer that uses it, like pickle below

        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise SerializerError(f"value cannot be stored as JSON: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        import json

        try:
            return json.loads(data)
        except ValueError as exc:
            raise SerializerError(f"entry is not valid JSON: {exc}") from exc


_PICKLE_REFUSAL = (
    "the 'pickle' serializer is off: loading a pickle runs code chosen by whoever wrote it, so "
    "a cache directory or Redis that anyone else can write would become code execution. "
    "Switch it on only for a cache that you alone can write: PickleSerializer(trusted=True), "
    "or in a config: [serializer] name = 'pickle', trusted = true"
)


@dataclasses.dataclass(frozen=True, slots=True)
class PickleSerializer(Serializer):
    """Any picklable value.  Refuses to work unless `trusted=True` (see the message below)."""

    trusted: bool = False
    protocol: int = 5  # pickle.HIGHEST_PROTOCOL since Python 3.8

    def __post_init__(self) -> None:
        if not isinstance(self.trusted, bool):
            raise TypeError(
                f"'trusted' must be {bool!r} (got {self.trusted!r} that is a "
                f"{type(self.trusted)!r})."
            )
        if not self.trusted:
            raise UnsafeSerializerError(_PICKLE_REFUSAL)
        import pickle

        if not isinstance(self.protocol, int) or self.protocol > pickle.HIGHEST_PROTOCOL:
            raise ValueError(
                f"protocol must be an int up to {pickle.HIGHEST_PROTOCOL} (a negative one means "
                f"the highest), not {self.protocol!r}"
            )

    def dumps(self, value: Any) -> bytes:
        import pickle  # loaded only where pickling is switched on

        try:
            return pickle.dumps(value, protocol=self.protocol)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializerError(f"value cannot be pickled: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        import pickle

        try:
            return pickle.loads(data)  # noqa: S301 - only reachable with trusted=True
        except Exception as exc:
            raise SerializerError(f"entry is not a valid pickle: {exc}") from exc
