"""Conformance suite for serializers.

Subclass it in a plugin's tests and provide two fixtures: `serializer` (an instance) and
`values` (a hypothesis strategy of values it must round-trip)::

    class TestMySerializer(SerializerConformance):
        @pytest.fixture
        def serializer(self): return MySerializer()

        @pytest.fixture
        def values(self): return st.text()
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .._serializer import Serializer
from ..errors import SerializerError

__all__ = ["SerializerConformance"]

# Subclasses run the same test methods from several classes: that is the point of a suite.
_fixture_ok = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.differing_executors],
)


class SerializerConformance:
    """Round trips, bytes output, and SerializerError (not a crash) on foreign bytes."""

    @pytest.fixture
    def serializer(self) -> Serializer:
        raise NotImplementedError("provide a `serializer` fixture")

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        raise NotImplementedError("provide a `values` fixture: a strategy of storable values")

    @_fixture_ok
    @given(data=st.data())
    def test_round_trip(
        self, serializer: Serializer, values: st.SearchStrategy[Any], data: st.DataObject
    ) -> None:
        value = data.draw(values)
        encoded = serializer.dumps(value)
        assert isinstance(encoded, bytes)
        assert serializer.loads(encoded) == value

    @_fixture_ok
    @given(garbage=st.binary(max_size=64))
    def test_foreign_bytes_raise_serializer_error_or_load(
        self, serializer: Serializer, garbage: bytes
    ) -> None:
        # The one allowed failure is a clear SerializerError, never a crash of another type.
        with contextlib.suppress(SerializerError):
            serializer.loads(garbage)

    def test_is_a_serializer(self, serializer: Serializer) -> None:
        assert isinstance(serializer, Serializer)
