"""from_config: every part by name, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cached_stores_factory import (
    CachedStoreFactory,
    CachePolicy,
    JsonSerializer,
    MemoryStore,
    Store,
    positive_number,
    whole_number,
)
from cached_stores_factory.errors import ConfigError, PluginNotFoundError, RemoteError, StoreError
from cached_stores_factory.plugins import PluginRegistry

MEMORY_PAIR: dict[str, Any] = {"local": {"store": "memory"}, "remote": {"store": "memory"}}


def core_only() -> PluginRegistry:
    """A registry that sees the built-ins and no installed plugin."""
    return PluginRegistry(entry_point_source=list)


def test_a_mapping_builds_the_same_factory_as_the_constructor() -> None:
    factory = CachedStoreFactory.from_config({**MEMORY_PAIR, "serializer": "json"})
    assert isinstance(factory.local_store, MemoryStore)
    assert isinstance(factory.remote_store, MemoryStore)
    assert factory.local_store is not factory.remote_store
    assert factory.cache_policy is None
    assert factory.serializer == JsonSerializer()
    store = factory.build()
    store.put("a/b", [1, "x"])
    assert factory.remote_store.get("a/b") == b'[1,"x"]'


def test_a_toml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "csf.toml"
    path.write_text('serializer = "text"\n[local]\nstore = "memory"\n[remote]\nstore = "memory"\n')
    store = CachedStoreFactory.from_config(path).build()
    store["greeting"] = "héllo"
    assert store["greeting"] == "héllo"


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[local]\nstore = "memory"\nname = \n')
    with pytest.raises(ConfigError, match=rf"{path}: invalid TOML: .*line 3"):
        CachedStoreFactory.from_config(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        CachedStoreFactory.from_config(tmp_path / "nope.toml")


def test_an_unknown_name_lists_installed_names_and_the_closest(tmp_path: Path) -> None:
    config = {**MEMORY_PAIR, "remote": {"store": "memroy"}}
    with pytest.raises(PluginNotFoundError) as info:
        CachedStoreFactory.from_config(config, plugins=core_only())
    message = str(info.value)
    assert "[remote]" in message
    assert "unknown store 'memroy'" in message
    assert "installed stores: memory" in message
    assert "did you mean 'memory'?" in message


def test_a_name_in_the_wrong_case_suggests_the_installed_spelling() -> None:
    config = {**MEMORY_PAIR, "remote": {"store": "MEMORY"}}
    with pytest.raises(PluginNotFoundError, match="did you mean 'memory'"):
        CachedStoreFactory.from_config(config, plugins=core_only())


@pytest.mark.parametrize(
    ("section", "name", "command"),
    [
        ("remote", "s3", 'pip install "cached-stores-factory[s3]"'),
        ("local", "redis", 'pip install "cached-stores-factory[redis]"'),
        ("local", "tempfile", "pip install cached-stores-factory"),
    ],
)
def test_a_first_party_name_without_its_plugin_names_the_pip_command(
    section: str, name: str, command: str
) -> None:
    config = {**MEMORY_PAIR, section: {"store": name}}
    with pytest.raises(PluginNotFoundError) as info:
        CachedStoreFactory.from_config(config, plugins=core_only())
    assert f"[{section}]" in str(info.value)
    assert str(info.value).endswith(f"{name!r} is first-party: {command}")


def test_first_party_policy_without_its_plugin_names_the_pip_command() -> None:
    with pytest.raises(
        PluginNotFoundError, match=r"unknown policy 'lru'.*pip install cached-stores-factory"
    ):
        CachedStoreFactory.from_config(
            {**MEMORY_PAIR, "policy": {"name": "lru"}}, plugins=core_only()
        )


def test_missing_and_unexpected_arguments_name_section_and_argument() -> None:
    with pytest.raises(
        ConfigError, match=r"\[local\] store 'memory': unexpected argument 'colour'"
    ):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "local": {"store": "memory", "colour": 1}})
    with pytest.raises(
        ConfigError,
        match=r"\[serializer\] serializer 'text': unexpected argument 'x' \(accepted: encoding\)",
    ):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "serializer": {"name": "text", "x": 1}})


def test_a_missing_argument_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = core_only()
    registry.names("store")  # load, then add a component that needs an argument

    class NeedsBucket(MemoryStore):
        def __init__(self, bucket: str) -> None:
            super().__init__()

    from cached_stores_factory.plugins import Component, PluginRecord

    registry._components["store", "needs"] = [
        Component("store", "needs", NeedsBucket, PluginRecord("test", None))
    ]
    with pytest.raises(ConfigError, match=r"\[remote\] store 'needs': missing argument 'bucket'"):
        CachedStoreFactory.from_config(
            {**MEMORY_PAIR, "remote": {"store": "needs"}}, plugins=registry
        )


def test_missing_sections_and_stray_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"missing section \[remote\]"):
        CachedStoreFactory.from_config({"local": {"store": "memory"}})
    with pytest.raises(ConfigError, match="unexpected top-level key 'polcy'"):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "polcy": {}})
    with pytest.raises(ConfigError, match=r'\[local\] needs store = "<a registered store name>"'):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "local": {"name": "memory"}})


def test_environment_variables_fill_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSF_TEST_ENCODING", "latin-1")
    factory = CachedStoreFactory.from_config(
        {**MEMORY_PAIR, "serializer": {"name": "text", "encoding": "${CSF_TEST_ENCODING}"}}
    )
    assert factory.serializer is not None
    assert factory.serializer.dumps("é") == "é".encode("latin-1")


def test_a_missing_environment_variable_is_named_with_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CSF_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"\[serializer\].*'encoding'.*'CSF_UNSET' is not set"):
        CachedStoreFactory.from_config(
            {**MEMORY_PAIR, "serializer": {"name": "text", "encoding": "${CSF_UNSET}"}}
        )


@pytest.mark.parametrize("value", ["${BUCKET", "x-${1BUCKET}", "${}"])
def test_a_broken_environment_reference_is_an_error_not_a_literal(value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[serializer\].*'encoding'.*without a closing '}'"):
        CachedStoreFactory.from_config(
            {**MEMORY_PAIR, "serializer": {"name": "text", "encoding": value}}
        )


def test_an_unknown_text_encoding_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[serializer\].*unknown encoding 'klingon'"):
        CachedStoreFactory.from_config(
            {**MEMORY_PAIR, "serializer": {"name": "text", "encoding": "klingon"}}
        )


def with_store(name: str, store_class: type[MemoryStore]) -> PluginRegistry:
    """The built-ins plus one store registered under `name`."""
    from cached_stores_factory.plugins import Component, PluginRecord

    registry = core_only()
    registry.names("store")
    registry._components["store", name] = [
        Component("store", name, store_class, PluginRecord("t", None))
    ]
    return registry


class Labelled(MemoryStore):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label


def test_dollar_dollar_escapes_a_dollar() -> None:
    factory = CachedStoreFactory.from_config(
        {**MEMORY_PAIR, "remote": {"store": "labelled", "label": "$${X}"}},
        plugins=with_store("labelled", Labelled),
    )
    assert isinstance(factory.remote_store, Labelled)
    assert factory.remote_store.label == "${X}"


@pytest.mark.parametrize("error", [StoreError, RemoteError])
def test_a_store_that_cannot_start_names_its_place_and_keeps_its_error_type(
    error: type[StoreError],
) -> None:
    class Unreachable(MemoryStore):
        def __init__(self) -> None:
            raise error("cannot open the store directory /nowhere: No such file or directory")

    factory = CachedStoreFactory.from_config(
        {**MEMORY_PAIR, "local": {"store": "unreachable"}},
        plugins=with_store("unreachable", Unreachable),
    )
    with pytest.raises(error) as info:
        factory.build()
    assert type(info.value) is error
    assert str(info.value) == (
        "config: [local] store 'unreachable': cannot open the store directory /nowhere: "
        "No such file or directory"
    )


def test_a_secret_in_a_constructor_error_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSF_TEST_PASSWORD", "hunter2-s3cr3t")

    class Picky(MemoryStore):
        def __init__(self, password: str) -> None:
            raise ValueError(f"login refused for password {password}")

    factory = CachedStoreFactory.from_config(
        {**MEMORY_PAIR, "remote": {"store": "picky", "password": "${CSF_TEST_PASSWORD}"}},
        plugins=with_store("picky", Picky),
    )
    assert "hunter2" not in repr(factory)
    with pytest.raises(ConfigError) as info:
        factory.build()
    assert "hunter2-s3cr3t" not in str(info.value)
    assert "login refused for password ***" in str(info.value)
    assert info.value.__cause__ is None


def test_the_constructor_checks_its_parts() -> None:
    with pytest.raises(TypeError, match="local_store") as info:
        CachedStoreFactory("tempfile", "s3")  # type: ignore[arg-type]
    assert str(info.value) == (
        "CachedStoreFactory: local_store must be a Store such as TempfileStore('my_cache'), "
        "not str 'tempfile'; to name parts as strings, use CachedStoreFactory.from_config() "
        "or from_toml()"
    )
    with pytest.raises(TypeError, match="remote_store must be a Store"):
        CachedStoreFactory(MemoryStore(), "s3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache_policy"):
        CachedStoreFactory(MemoryStore(), MemoryStore(), "lru")  # type: ignore[arg-type]
    built = CachedStoreFactory(MemoryStore(), MemoryStore(), CachePolicy()).build()
    assert isinstance(built, Store)


def test_a_misspelt_argument_is_reported_with_the_missing_one() -> None:
    with pytest.raises(ConfigError) as info:
        CachedStoreFactory.from_config({**MEMORY_PAIR, "policy": {"name": "lru", "size": 3}})
    assert str(info.value) == (
        "config: [policy] policy 'lru': unexpected argument 'size' "
        "(accepted: depth, max_bytes, ttl, stale_if_error, stale_while_revalidate, ledger, "
        "ledger_cluster, ledger_key, lease_timeout, clock); missing argument 'depth'"
    )


def test_a_one_letter_slip_in_a_short_name_is_caught() -> None:
    with pytest.raises(PluginNotFoundError, match="did you mean 's3'"):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "remote": {"store": "s4"}})


def test_a_default_fills_an_unset_or_empty_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    def encoding() -> str:
        config = {**MEMORY_PAIR, "serializer": {"name": "text", "encoding": "${CSF_ENC:-ascii}"}}
        return CachedStoreFactory.from_config(config).serializer.encoding  # type: ignore[union-attr]

    monkeypatch.delenv("CSF_ENC", raising=False)
    assert encoding() == "ascii"
    monkeypatch.setenv("CSF_ENC", "")
    assert encoding() == "ascii"
    monkeypatch.setenv("CSF_ENC", "latin-1")
    assert encoding() == "latin-1"


@given(depth=st.integers(min_value=1, max_value=10**12), ttl=st.floats(0.001, 1e9))
def test_one_reference_takes_the_annotated_number_type(depth: int, ttl: float) -> None:
    environ = {"CSF_DEPTH": str(depth), "CSF_TTL": repr(ttl)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        factory = CachedStoreFactory.from_toml(
            '[local]\nstore = "memory"\n[remote]\nstore = "memory"\n'
            '[policy]\nname = "lru"\ndepth = "${CSF_DEPTH}"\nttl = "${CSF_TTL}"\n'
        )
    policy = factory.cache_policy
    assert (policy.depth, policy.ttl) == (depth, ttl)  # type: ignore[union-attr]
    assert type(policy.depth) is int  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("FALSE", False), ("yes", True), ("off", False), ("1", True), ("0", False)],
)
def test_one_reference_takes_a_bool_annotation(tmp_path: Path, text: str, expected: bool) -> None:
    config = {
        **MEMORY_PAIR,
        "local": {
            "store": "tempfile",
            "name": "t",
            "root": str(tmp_path),
            "fsync": f"${{F:-{text}}}",
        },
    }
    local = CachedStoreFactory.from_config(config).local_store
    assert local.fsync is expected  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("depth", "${CSF_V:-deep}", "argument 'depth': 'deep' is not an int"),
        ("ttl", "${CSF_V:-soon}", "argument 'ttl': 'soon' is not a float"),
        ("depth", "x${CSF_V:-3}", "argument 'depth': must be an int, not str 'x3'"),
        ("depth", 0, "argument 'depth': depth must be >= 1, got 0"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_argument(
    argument: str, value: object, message: str
) -> None:
    policy = {"name": "fifo", "depth": 2, argument: value}
    with pytest.raises(ConfigError) as info:
        CachedStoreFactory.from_config({**MEMORY_PAIR, "policy": policy})
    assert str(info.value) == f"config: [policy] policy 'fifo' {message}"


def test_a_toml_string_builds_a_factory() -> None:
    store = CachedStoreFactory.from_toml(
        'serializer = "json"\n[local]\nstore = "memory"\n[remote]\nstore = "memory"\n'
    ).build()
    store["k"] = {"v": 1}
    assert store["k"] == {"v": 1}
    with pytest.raises(ConfigError, match=r"<toml>: invalid TOML: .*line 1"):
        CachedStoreFactory.from_toml("[local\n")


def test_reading_a_config_creates_nothing_until_build(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    factory = CachedStoreFactory.from_config(
        {**MEMORY_PAIR, "local": {"store": "tempfile", "name": "c", "root": str(root)}}
    )
    assert not root.exists()
    assert "Recipe" in repr(factory)
    store = factory.build()
    assert root.is_dir()
    assert store.local is factory.local_store  # made once, then kept
    assert factory.build().local is store.local


def test_an_unknown_policy_lists_the_installed_policies() -> None:
    with pytest.raises(PluginNotFoundError, match="unknown policy 'lfu'; installed policies: "):
        CachedStoreFactory.from_config({**MEMORY_PAIR, "policy": {"name": "lfu"}})


class Bounded(MemoryStore):
    """A plugin's store whose arguments have ranges; counts how often it is made."""

    argument_checks = MappingProxyType({"slots": whole_number(1, 64), "wait": positive_number})
    made = 0

    def __init__(self, slots: int = 8, wait: float | None = None) -> None:
        self.check_arguments(slots=slots, wait=wait)
        Bounded.made += 1
        super().__init__()


@given(slots=st.integers(-5, 70), wait=st.one_of(st.none(), st.floats(-2, 2)))
def test_a_store_s_argument_checks_run_when_the_config_is_read(
    slots: int, wait: float | None
) -> None:
    config = {**MEMORY_PAIR, "remote": {"store": "bounded", "slots": slots, "wait": wait}}
    made = Bounded.made
    if 1 <= slots <= 64 and (wait is None or wait > 0):
        CachedStoreFactory.from_config(config, plugins=with_store("bounded", Bounded)).build()
        assert Bounded.made == made + 1
        return
    with pytest.raises(ConfigError) as info:
        CachedStoreFactory.from_config(config, plugins=with_store("bounded", Bounded)).build()
    problem = (
        f"'slots': must be a whole number from 1 to 64, not {slots}"
        if not 1 <= slots <= 64
        else f"'wait': must be a positive number, not {wait!r}"
    )
    assert str(info.value) == f"config: [remote] store 'bounded' argument {problem}"
    assert Bounded.made == made  # refused before the store was made
    with pytest.raises(ConfigError) as info:
        Bounded(slots=slots, wait=wait)
    assert str(info.value) == f"Bounded argument {problem}"


@pytest.mark.parametrize("value", [True, 1.0, "3", float("nan"), -1])
def test_a_whole_number_is_an_int_in_its_range(value: object) -> None:
    assert whole_number(0)(value) == f"must be a whole number >= 0, not {value!r}"
    assert whole_number(0)(3) is None
