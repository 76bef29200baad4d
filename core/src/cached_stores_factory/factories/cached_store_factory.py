"""`from cached_stores_factory.factories.cached_store_factory import CachedStoreFactory`."""

from .._factory import CachedStoreFactory

__all__ = ["CachedStoreFactory"]
