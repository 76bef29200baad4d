"""cached-stores-factory: put a fast store in front of a slow one.

Compose a local store, a remote store and a cache policy, build a cached store, and read and
write remote objects through it as ordinary file objects.
"""

from typing import TYPE_CHECKING

from ._engine import CachedStore
from ._factory import CachedStoreFactory
from ._keys import validate_key
from ._policy import CachePolicy
from ._serializer import BytesSerializer, Serializer
from ._stats import CacheStats
from ._store import BytesReader, EntryReader, EntryStat, Store
from ._types import positive_number, whole_number
from ._version import PLUGIN_API, __version__
from .hookspecs import hookimpl, lazy_exports
from .stores.memory_store import MemoryStore

if TYPE_CHECKING:
    from ._formats import JsonSerializer, PickleSerializer, TextSerializer

__all__ = [
    "PLUGIN_API",
    "BytesReader",
    "BytesSerializer",
    "CachePolicy",
    "CacheStats",
    "CachedStore",
    "CachedStoreFactory",
    "EntryReader",
    "EntryStat",
    "JsonSerializer",
    "MemoryStore",
    "PickleSerializer",
    "Serializer",
    "Store",
    "TextSerializer",
    "__version__",
    "hookimpl",
    "positive_number",
    "validate_key",
    "whole_number",
]

__getattr__ = lazy_exports(
    __name__,
    {name: "._formats" for name in ("JsonSerializer", "PickleSerializer", "TextSerializer")},
)
