"""GzipJsonSerializer: JSON, compressed. Safe to load from a cache others can write."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import attrs

from cached_stores_factory import JsonSerializer, Serializer
from cached_stores_factory.errors import SerializerError


@attrs.frozen
class GzipJsonSerializer(Serializer):
    level: int = attrs.field(default=6, validator=[attrs.validators.ge(0), attrs.validators.le(9)])

    def dumps(self, value: Any) -> bytes:
        return gzip.compress(JsonSerializer().dumps(value), compresslevel=self.level, mtime=0)

    def loads(self, data: bytes) -> Any:
        try:
            text = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise SerializerError(f"entry is not gzip data: {exc}") from exc
        return JsonSerializer().loads(text)
