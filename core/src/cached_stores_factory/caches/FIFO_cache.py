"""`from cached_stores_factory.caches.FIFO_cache import FIFOCache`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_policies import FIFOCache
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc, "cached_stores_factory_policies", "FIFOCache", "pip install cached-stores-factory"
    ) from exc

__all__ = ["FIFOCache"]
