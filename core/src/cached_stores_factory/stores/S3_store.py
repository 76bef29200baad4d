"""`from cached_stores_factory.stores.S3_store import S3Store`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_s3 import S3Store
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc, "cached_stores_factory_s3", "S3Store", 'pip install "cached-stores-factory[s3]"'
    ) from exc

__all__ = ["S3Store"]
