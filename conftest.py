"""Shared by every test folder: real-server fixtures (redis-server, moto's S3 HTTP server)."""

pytest_plugins = ["cached_stores_factory.testing.servers", "cached_stores_factory.testing.faults"]
