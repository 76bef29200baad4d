"""Stores, at the import paths of the original examples.

`memory_store` is built in; `tempfile_store`, `redis_store` and `S3_store` re-export the
first-party plugins and name the pip extra that installs a missing one.
"""
