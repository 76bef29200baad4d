"""Stores, at the import paths of the original examples.

`memory_store` is built in; `tempfile_store`, `redis_store` and `S3_store` find the
first-party plugins' classes by name in the plugin registry, and name the pip extra that
installs a missing one.
"""
