"""The project's components, looked up so that a missing one becomes a reason, not a crash.

The stores and policies are built in parallel with this harness; until one is committed, the
rows that need it say "n/a: <reason>".
"""

from __future__ import annotations

import importlib
from typing import Any

PARTS = {
    "TempfileStore": "cached_stores_factory_tempfile",
    "RedisStore": "cached_stores_factory_redis",
    "S3Store": "cached_stores_factory_s3",
    "TTLCache": "cached_stores_factory_policies",
    "FIFOCache": "cached_stores_factory_policies",
    "LRUCache": "cached_stores_factory_policies",
}


class PartMissing(Exception):
    """A component this row needs is not importable (yet)."""


def part(name: str) -> Any:
    """The class `name` from its plugin, or PartMissing saying why not."""
    module_name = PARTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PartMissing(f"{module_name} does not import ({exc})") from None
    try:
        return getattr(module, name)
    except AttributeError:
        raise PartMissing(f"{name} is not in {module_name} yet") from None
