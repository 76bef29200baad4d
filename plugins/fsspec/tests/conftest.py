"""What the fsspec store's tests share."""

from __future__ import annotations

import io
from typing import Any

import pytest


class BreakingStream(io.RawIOBase):
    """`size` bytes of b"n", then an OSError once `breaks_at` bytes were read."""

    def __init__(self, size: int, breaks_at: int) -> None:
        super().__init__()
        self.read_so_far = 0
        self.size = size
        self.breaks_at = breaks_at

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.read_so_far >= self.breaks_at:
            raise OSError("the source broke")
        count = min(len(buffer), self.size - self.read_so_far, 256 * 1024)
        buffer[:count] = b"n" * count
        self.read_so_far += count
        return count


@pytest.fixture
def breaking_stream() -> type[BreakingStream]:
    """A source that breaks mid-write: BreakingStream(size, breaks_at)."""
    return BreakingStream
