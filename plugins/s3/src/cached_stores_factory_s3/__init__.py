"""cached-stores-factory plugin 's3': a store in an S3 bucket (AWS, MinIO, R2, ...).

boto3 is imported when an S3Store is built, never when this plugin is loaded.
"""

from __future__ import annotations

import cached_stores_factory
from cached_stores_factory.hookspecs import Register

from ._store import MIN_PART_SIZE, S3Store

__all__ = ["MIN_PART_SIZE", "S3Store"]
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@cached_stores_factory.hookimpl
def csf_register_stores(register: Register) -> None:
    register("s3", S3Store)
