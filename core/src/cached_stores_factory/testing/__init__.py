"""Test support for plugin authors: conformance suites and real-server fixtures.

Conformance suites live in `cached_stores_factory.testing.stores`, `.policies` and
`.serializers`; subclass one and provide its fixture.  Real servers (a `redis-server`
process, moto's S3 HTTP server) come from the pytest plugin
`cached_stores_factory.testing.servers`:

    pytest_plugins = ["cached_stores_factory.testing.servers"]
"""
