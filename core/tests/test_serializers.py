"""Built-in serializers pass the conformance suite; pickle stays off unless trusted."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import strategies as st

from cached_stores_factory import (
    BytesSerializer,
    CachedStoreFactory,
    JsonSerializer,
    MemoryStore,
    PickleSerializer,
    Serializer,
    TextSerializer,
)
from cached_stores_factory.errors import ConfigError, SerializerError, UnsafeSerializerError
from cached_stores_factory.testing.serializers import SerializerConformance

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


class TestBytes(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return BytesSerializer()

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        return st.binary()


class TestText(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return TextSerializer()

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        return st.text()


class TestJson(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return JsonSerializer()

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        return json_values


class TestTrustedPickle(SerializerConformance):
    @pytest.fixture
    def serializer(self) -> Serializer:
        return PickleSerializer(trusted=True)

    @pytest.fixture
    def values(self) -> st.SearchStrategy[Any]:
        return json_values | st.sets(st.integers()) | st.tuples(st.integers(), st.binary())


def test_pickle_refuses_to_work_unless_trusted_and_says_why() -> None:
    with pytest.raises(UnsafeSerializerError, match="code execution") as info:
        PickleSerializer()
    assert "trusted=True" in str(info.value)
    assert isinstance(info.value, ConfigError)


def test_pickle_by_name_in_a_config_needs_trusted() -> None:
    config: dict[str, Any] = {"local": {"store": "memory"}, "remote": {"store": "memory"}}
    with pytest.raises(ConfigError, match=r"\[serializer\].*code execution"):
        CachedStoreFactory.from_config({**config, "serializer": "pickle"})
    factory = CachedStoreFactory.from_config(
        {**config, "serializer": {"name": "pickle", "trusted": True}}
    )
    assert factory.serializer == PickleSerializer(trusted=True)


def test_json_never_executes_a_planted_pickle() -> None:
    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, ("raise SystemExit('pwned')",))

    with pytest.raises(SerializerError, match="not valid JSON"):
        JsonSerializer().loads(pickle.dumps(Boom()))


@pytest.mark.parametrize(
    ("serializer", "value", "message"),
    [
        (BytesSerializer(), "text", "stores bytes, not str"),
        (TextSerializer(), b"x", "stores str, not bytes"),
        (JsonSerializer(), {1, 2}, "cannot be stored as JSON"),
    ],
)
def test_unstorable_values_raise_serializer_error(
    serializer: Serializer, value: Any, message: str
) -> None:
    with pytest.raises(SerializerError, match=message):
        serializer.dumps(value)


def test_value_api_uses_the_configured_serializer() -> None:
    remote = MemoryStore()
    store = CachedStoreFactory(MemoryStore(), remote, serializer="json").build()
    store["doc.json"] = {"a": [1, 2]}
    assert remote.get("doc.json") == b'{"a":[1,2]}'
    assert store["doc.json"] == {"a": [1, 2]}


@pytest.mark.parametrize("protocol", [6, 99])
def test_a_pickle_protocol_python_does_not_have_is_refused_when_made(protocol: int) -> None:
    with pytest.raises(
        ValueError, match=rf"up to 5 \(a negative one means the highest\), not {protocol}"
    ):
        PickleSerializer(trusted=True, protocol=protocol)
    highest = PickleSerializer(trusted=True, protocol=-1)  # pickle's own "the highest"
    assert highest.loads(highest.dumps([1])) == [1]
