"""The serializers a config names as "text", "json" or "pickle"."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._serializer import Serializer
from .errors import SerializerError, UnsafeSerializerError

__all__ = ["JsonSerializer", "PickleSerializer", "TextSerializer"]


@dataclasses.dataclass(frozen=True, slots=True)
class TextSerializer(Serializer):
    """Values are str, stored encoded.

    Args:
        encoding: A codec Python's `codecs` knows; another name is a config error.
    """

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
    """Any picklable value.  Refuses to work unless `trusted=True` (see the message below).

    Args:
        trusted: Must be True, or the serializer refuses to work: loading a pickle runs code
            chosen by whoever wrote it.  Only for stores that you alone can write.
        protocol: The pickle protocol of the entries written.
    """

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
