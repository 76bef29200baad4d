"""`from cached_stores_factory.caches.LRU_cache import LRUCache`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_policies import LRUCache
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc, "cached_stores_factory_policies", "LRUCache", "pip install cached-stores-factory"
    ) from exc

__all__ = ["LRUCache"]
