"""`from cached_stores_factory.caches.TTL_cache import FIFOCache, TTLCache`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_policies import FIFOCache, TTLCache
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc,
        "cached_stores_factory_policies",
        "FIFOCache, TTLCache",
        "pip install cached-stores-factory",
    ) from exc

__all__ = ["FIFOCache", "TTLCache"]
