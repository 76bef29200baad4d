"""Loggers made on first use.

Only warnings need logging, and importing it is a measurable part of a cold start
(docs/performance.md has the figure).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import logging

__all__ = ["lazy_logger"]


class _LazyLogger:
    __slots__ = ("_logger", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self.name)
        return getattr(self._logger, attribute)


def lazy_logger(name: str) -> logging.Logger:
    """`logging.getLogger(name)`, with logging imported when the logger is first used."""
    return cast("logging.Logger", _LazyLogger(name))
