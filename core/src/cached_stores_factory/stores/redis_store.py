"""`from cached_stores_factory.stores.redis_store import RedisStore`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_redis import RedisStore
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc,
        "cached_stores_factory_redis",
        "RedisStore",
        'pip install "cached-stores-factory[redis]"',
    ) from exc

__all__ = ["RedisStore"]
