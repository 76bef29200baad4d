"""`from cached_stores_factory.stores.tempfile_store import TempfileStore`."""

from .._reexport import missing_plugin

try:
    from cached_stores_factory_tempfile import TempfileStore
except ModuleNotFoundError as exc:
    raise missing_plugin(
        exc, "cached_stores_factory_tempfile", "TempfileStore", "pip install cached-stores-factory"
    ) from exc

__all__ = ["TempfileStore"]
