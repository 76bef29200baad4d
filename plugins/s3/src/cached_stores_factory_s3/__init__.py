"""cached-stores-factory plugin 's3': a store in an S3 bucket (AWS, MinIO, R2, ...).

boto3 is imported when an S3Store is built, the store's module when it is first used; neither
when this plugin is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._store import MIN_PART_SIZE, S3Store

__all__ = ["MIN_PART_SIZE", "S3Store"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "._store"))
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_stores(register: Register) -> None:
    register("s3", "cached_stores_factory_s3:S3Store")
