"""Plugin discovery through real entry points: found by name, broken ones contained."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import pytest

from cached_stores_factory import PLUGIN_API, CachedStoreFactory, MemoryStore, __version__, cli
from cached_stores_factory.errors import (
    DuplicatePluginError,
    PluginLoadError,
    PluginNotFoundError,
)
from cached_stores_factory.events import dispatcher
from cached_stores_factory.plugins import PluginRegistry

ECHO_PLUGIN = """
from cached_stores_factory import MemoryStore, hookimpl

class EchoStore(MemoryStore):
    def __init__(self, greeting: str) -> None:
        super().__init__()
        self.greeting = greeting

@hookimpl
def csf_register_stores(register):
    register("echo", EchoStore)
"""


def install_distribution(
    site: Path, dist: str, module: str, source: str, entry_point: str | None = None
) -> None:
    """Lay out an installed distribution (module + dist-info with an entry point) in `site`."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(
        f"[cached_stores_factory]\n{entry_point or module} = {module}\n"
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_third_party_store_is_found_by_name_from_a_config(site: Path) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    registry = PluginRegistry()
    factory = CachedStoreFactory.from_config(
        {"local": {"store": "memory"}, "remote": {"store": "echo", "greeting": "hi"}},
        plugins=registry,
    )
    assert type(factory.remote_store).__name__ == "EchoStore"
    assert factory.remote_store.greeting == "hi"  # type: ignore[attr-defined]
    component = registry.get("store", "echo")
    assert (component.distribution, component.version, component.plugin) == (
        "csf-echo",
        "1.2.3",
        "csf_echo",
    )


def test_a_broken_plugin_is_recorded_and_breaks_nothing_else(site: Path) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(site, "csf-broken", "csf_broken", "raise RuntimeError('no backend')")
    registry = PluginRegistry()
    assert registry.get("store", "echo").name == "echo"
    assert registry.get("store", "memory").factory is MemoryStore
    [broken] = [p for p in registry.plugins() if p.error is not None]
    assert (broken.name, broken.distribution) == ("csf_broken", "csf-broken")
    with pytest.raises(PluginLoadError, match="no backend") as info:
        registry.get("store", "csf_broken")
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(PluginNotFoundError, match="failed to load: csf_broken"):
        registry.get("store", "nonexistent")


def test_a_plugin_whose_hook_raises_registers_nothing(site: Path) -> None:
    install_distribution(
        site,
        "csf-half",
        "csf_half",
        """
        from cached_stores_factory import MemoryStore, hookimpl

        @hookimpl
        def csf_register_stores(register):
            register("half", MemoryStore)
            raise ValueError("second registration failed")
        """,
    )
    registry = PluginRegistry()
    assert "half" not in registry.names("store")
    with pytest.raises(PluginLoadError, match="second registration failed"):
        registry.get("store", "csf_half")


def test_a_misspelled_hook_is_named_and_the_plugins_other_hooks_still_work(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_distribution(
        site,
        "csf-typo",
        "csf_typo",
        """
        from cached_stores_factory import MemoryStore, JsonSerializer, hookimpl

        @hookimpl
        def csf_register_store(register):
            register("typo", MemoryStore)

        @hookimpl
        def csf_register_serializers(register):
            register("typo-json", JsonSerializer)
        """,
    )
    registry = PluginRegistry()
    [record] = [p for p in registry.plugins() if p.name == "csf_typo"]
    assert record.error is None
    assert record.problems == [
        "unknown hook 'csf_register_store' (did you mean 'csf_register_stores'?) is never "
        "called; the plugin's other hooks are"
    ]
    assert registry.get("serializer", "typo-json").distribution == "csf-typo"
    with pytest.raises(
        PluginNotFoundError,
        match=r"unknown store 'typo'.*Plugin 'csf_typo': "
        r"unknown hook 'csf_register_store' \(did you mean",
    ):
        registry.get("store", "typo")
    rows = cli._plugin_rows(registry)
    assert {
        "kind": None,
        "name": "csf_typo",
        "distribution": "csf-typo",
        "version": "1.2.3",
        "error": record.problems[0],
    } in rows


def test_listeners_start_when_the_registry_loads_and_a_failing_one_is_named(
    site: Path,
) -> None:
    install_distribution(
        site,
        "csf-listeners",
        "csf_listeners",
        """
        from cached_stores_factory import hookimpl

        heard = []

        def broken():
            raise OSError("no collector")

        @hookimpl
        def csf_register_listeners(register):
            register("recorder", lambda: heard.append)
            register("broken", broken)
        """,
    )
    only_these = {"CSF_DISABLE_PLUGINS": "otel"}  # the first-party listener, if installed
    registry = PluginRegistry(environ=only_these, start_listeners=True)
    assert registry.names("listener") == ["broken", "recorder"]
    [record] = [p for p in registry.plugins() if p.name == "csf_listeners"]
    assert record.problems == ["listener 'broken' did not start: OSError: no collector"]
    import csf_listeners  # type: ignore[import-not-found]

    try:
        assert csf_listeners.heard.append in dispatcher.listeners
    finally:
        dispatcher.unsubscribe(csf_listeners.heard.append)
    # Another registry lists them and starts none: only the process-wide one does.
    assert PluginRegistry(environ=only_these).names("listener") == ["broken", "recorder"]
    assert csf_listeners.heard.append not in dispatcher.listeners


def test_two_distributions_registering_one_name_are_refused_by_name(site: Path) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(site, "csf-echo-fork", "csf_echo_fork", ECHO_PLUGIN)
    registry = PluginRegistry()
    with pytest.raises(DuplicatePluginError) as info:
        registry.get("store", "echo")
    assert "csf-echo" in str(info.value)
    assert "csf-echo-fork" in str(info.value)
    assert registry.get("store", "memory").name == "memory"


def two_stores(*names: str, api: str = "(1, 1)") -> str:
    return f"""
    from cached_stores_factory import MemoryStore, hookimpl

    CSF_PLUGIN_API = {api}

    @hookimpl
    def csf_register_stores(register):
        for name in {names!r}:
            register(name, MemoryStore)
    """


def test_two_plugins_with_one_entry_point_name_lose_only_the_name_they_share(site: Path) -> None:
    install_distribution(site, "csf-one", "csf_one", two_stores("one", "both"), "shared")
    install_distribution(site, "csf-two", "csf_two", two_stores("two", "both"), "shared")
    registry = PluginRegistry()
    assert registry.get("store", "one").distribution == "csf-one"
    assert registry.get("store", "two").distribution == "csf-two"
    with pytest.raises(DuplicatePluginError) as info:
        registry.get("store", "both")
    assert "csf-one" in str(info.value)
    assert "csf-two" in str(info.value)
    shared = [(p.distribution, p.error) for p in registry.plugins() if p.name == "shared"]
    assert sorted(shared, key=str) == [("csf-one", None), ("csf-two", None)]


def test_a_plugin_made_for_another_plugin_api_is_listed_and_refused_by_name(
    site: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(site, "csf-future", "csf_future", two_stores("future", api="(2, 3)"))
    registry = PluginRegistry()
    assert "future" not in registry.names("store")
    assert registry.get("store", "echo").name == "echo"
    [record] = [p for p in registry.plugins() if p.name == "csf_future"]
    assert "made for plugin API 2 to 3" in str(record.error)
    assert f"provides plugin API {PLUGIN_API}" in str(record.error)
    with pytest.raises(PluginLoadError, match=r"csf-future\), which failed to load: .*API 2 to 3"):
        registry.get("store", "csf_future")
    with pytest.raises(PluginNotFoundError, match="failed to load: csf_future"):
        registry.get("store", "future")

    monkeypatch.setattr(cli, "registry", registry)
    assert cli.main(["plugins", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["csf_future"]["kind"] is None
    assert "made for plugin API 2 to 3" in rows["csf_future"]["error"]


@pytest.mark.parametrize("declared", ["1", "(1,)", "(1, '2')", "[1, 1]"])
def test_a_malformed_plugin_api_declaration_is_a_load_error(site: Path, declared: str) -> None:
    install_distribution(
        site, "csf-odd", "csf_odd", f"{ECHO_PLUGIN}\nCSF_PLUGIN_API = {declared}\n"
    )
    [record] = [p for p in PluginRegistry().plugins() if p.name == "csf_odd"]
    assert "CSF_PLUGIN_API must be (lowest, highest) ints" in str(record.error)


def test_hooks_run_through_pluggy_with_wrappers_and_ordering(site: Path) -> None:
    (site / "csf_calls.py").write_text("CALLS = []\n")
    ordered = """
    import csf_calls
    from cached_stores_factory import MemoryStore, hookimpl

    @hookimpl({option}=True)
    def csf_register_stores(register):
        csf_calls.CALLS.append({name!r})
        register({name!r}, MemoryStore)
    """
    install_distribution(
        site, "csf-late", "csf_late", ordered.format(option="trylast", name="late")
    )
    install_distribution(
        site, "csf-early", "csf_early", ordered.format(option="tryfirst", name="early")
    )
    install_distribution(
        site,
        "csf-wrap",
        "csf_wrap",
        """
        import csf_calls
        from cached_stores_factory import MemoryStore, hookimpl

        @hookimpl(wrapper=True)
        def csf_register_stores(register):
            csf_calls.CALLS.append("before")
            result = yield
            csf_calls.CALLS.append("after")
            register("wrapped", MemoryStore)
            return result
        """,
    )
    registry = PluginRegistry()
    assert {"early", "late", "wrapped"} <= set(registry.names("store"))
    assert registry.get("store", "wrapped").distribution == "csf-wrap"
    import csf_calls  # type: ignore[import-not-found]

    assert csf_calls.CALLS == ["before", "early", "late", "after"]


def test_a_wrapper_that_raises_is_recorded_and_the_other_plugins_still_register(
    site: Path,
) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(
        site,
        "csf-badwrap",
        "csf_badwrap",
        """
        from cached_stores_factory import MemoryStore, hookimpl

        @hookimpl
        def csf_register_serializers(register):
            register("never-kept", MemoryStore)

        @hookimpl(wrapper=True)
        def csf_register_stores(register):
            register("half-wrapped", MemoryStore)
            raise OSError("wrapper broke")
            yield
        """,
    )
    registry = PluginRegistry()
    assert registry.get("store", "echo").name == "echo"
    assert "half-wrapped" not in registry.names("store")
    assert "never-kept" not in registry.names("serializer")
    with pytest.raises(PluginLoadError, match="wrapper broke"):
        registry.get("store", "csf_badwrap")


def test_a_module_attribute_factory_is_imported_on_first_use(site: Path) -> None:
    (site / "csf_lazy_impl.py").write_text(
        "from cached_stores_factory import MemoryStore\nclass LazyStore(MemoryStore):\n    pass\n"
    )
    install_distribution(
        site,
        "csf-lazy",
        "csf_lazy",
        """
        from cached_stores_factory import hookimpl

        @hookimpl
        def csf_register_stores(register):
            register("lazy", "csf_lazy_impl:LazyStore")
            register("gone", "csf_lazy_impl:NoSuchStore")
        """,
    )
    registry = PluginRegistry()
    assert {"lazy", "gone"} <= set(registry.names("store"))
    assert "csf_lazy_impl" not in sys.modules
    assert registry.get("store", "lazy").factory.__name__ == "LazyStore"
    with pytest.raises(PluginLoadError, match=r"cannot import csf_lazy_impl:NoSuchStore"):
        registry.get("store", "gone")


def test_disabled_plugins_are_skipped_and_named(site: Path) -> None:
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    registry = PluginRegistry(environ={"CSF_DISABLE_PLUGINS": "csf_echo, other"})
    assert "echo" not in registry.names("store")
    assert any(p.disabled for p in registry.plugins() if p.name == "csf_echo")
    with pytest.raises(PluginNotFoundError, match="CSF_DISABLE_PLUGINS"):
        registry.get("store", "csf_echo")


def test_loading_is_lazy_and_scans_entry_points_once() -> None:
    scans: list[int] = []

    def source() -> list[object]:
        scans.append(1)
        return []

    registry = PluginRegistry(entry_point_source=source)  # type: ignore[arg-type]
    assert scans == []
    registry.names("store")
    registry.get("serializer", "json")
    registry.components()
    assert scans == [1]


def test_concurrent_first_lookups_scan_entry_points_once() -> None:
    scans: list[int] = []
    start = threading.Barrier(8)

    def source() -> list[object]:
        scans.append(1)
        return []

    registry = PluginRegistry(entry_point_source=source)  # type: ignore[arg-type]

    def first_lookup(_: int) -> list[str]:
        start.wait()
        return registry.names("serializer")

    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(first_lookup, range(8)))
    assert scans == [1]
    assert found == [["bytes", "json", "pickle", "text"]] * 8


def test_builtins_come_through_the_same_hooks() -> None:
    registry = PluginRegistry(entry_point_source=list)
    rows = {(c.kind, c.name): c.plugin for c in registry.components()}
    assert rows == {
        ("store", "memory"): "builtins",
        ("serializer", "bytes"): "builtins",
        ("serializer", "text"): "builtins",
        ("serializer", "json"): "builtins",
        ("serializer", "pickle"): "builtins",
    }


def test_importing_the_core_imports_neither_boto3_nor_redis() -> None:
    code = (
        "import sys, cached_stores_factory, cached_stores_factory.plugins as p\n"
        "p.registry.names('store')\n"
        "import cached_stores_factory.stores.S3_store, cached_stores_factory.stores.redis_store\n"
        "print([m for m in ('boto3', 'botocore', 'redis') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_cold_start_imports_only_what_a_hit_needs(tmp_path: Path) -> None:
    """Building a tempfile store from config imports no attrs and no dataclasses (the core's
    records are named tuples), no logging (loggers are made on first use), no json (sidecars
    only) and no remote client; a write (which looks for ranged-read blocks, whose module
    makes dataclasses) and a hit after it still need no attrs and no logging."""
    code = (
        "import sys\n"
        "from cached_stores_factory import CachedStoreFactory\n"
        f"config = {{'local': {{'store': 'tempfile', 'name': 'cold', 'root': {str(tmp_path)!r}}},\n"
        "          'remote': {'store': 'memory'}}\n"
        "store = CachedStoreFactory.from_config(config).build()\n"
        "lazy = ('attrs', 'dataclasses', 'logging', 'json', 'boto3', 'botocore', 'redis')\n"
        "print([m for m in lazy if m in sys.modules])\n"
        "store.put('k', b'v')\n"
        "with store.open('k', 'rb') as f:\n"
        "    assert f.read() == b'v'\n"
        "assert store.stats()['hits'] == 1, store.stats()\n"
        "print([m for m in lazy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "['dataclasses', 'json']"]


def test_loading_the_plugins_imports_no_store_or_policy_module() -> None:
    code = (
        "import sys\n"
        "from cached_stores_factory.plugins import registry\n"
        "names = registry.names('store') + registry.names('policy')\n"
        "modules = ('cached_stores_factory_tempfile._store', 'cached_stores_factory_s3._store',\n"
        "           'cached_stores_factory_redis._store', 'cached_stores_factory_policies._ttl',\n"
        "           'cached_stores_factory_policies._bounded', 'csf_example_plugin.store')\n"
        "print(sorted(names), [m for m in modules if m in sys.modules])\n"
        "registry.get('store', 's3')\n"
        "print([m for m in modules + ('boto3',) if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, used = out.stdout.splitlines()
    assert "'s3'" in loaded and "'lru'" in loaded
    assert loaded.endswith(" []")
    assert used == "['cached_stores_factory_s3._store']"


@pytest.mark.slow
def test_a_core_only_venv_names_the_pip_extra_and_finds_an_installed_plugin(
    tmp_path: Path,
) -> None:
    """A real venv with only the core and a throwaway plugin distribution pip-installed."""
    repo = Path(__file__).resolve().parents[2]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    plugin = tmp_path / "csf-echo"
    (plugin / "csf_echo").mkdir(parents=True)
    (plugin / "csf_echo" / "__init__.py").write_text(ECHO_PLUGIN)
    (plugin / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["hatchling>=1.25"]
            build-backend = "hatchling.build"
            [project]
            name = "csf-echo"
            version = "0.3.0"
            dependencies = ["cached-stores-factory-core"]
            [project.entry-points.cached_stores_factory]
            echo = "csf_echo"
            """
        )
    )
    subprocess.run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(repo / "requirements/constraints.txt"),
            str(repo / "core"),
            str(plugin),
        ],
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        [str(venv / "bin" / "csf"), "plugins", "--json"], capture_output=True, text=True, check=True
    )
    rows = {(r["kind"], r["name"]): r for r in json.loads(listing.stdout)}
    assert rows["store", "echo"]["distribution"] == "csf-echo"
    assert rows["store", "echo"]["version"] == "0.3.0"
    assert ("store", "s3") not in rows

    config = tmp_path / "csf.toml"
    config.write_text('[local]\nstore = "memory"\n[remote]\nstore = "s3"\nbucketname = "b"\n')
    failed = subprocess.run(
        [str(venv / "bin" / "csf"), "-c", str(config), "check"], capture_output=True, text=True
    )
    assert failed.returncode == 2
    assert 'pip install "cached-stores-factory[s3]"' in failed.stderr
    assert "Traceback" not in failed.stderr
    seed_import = subprocess.run(
        [python, "-c", "from cached_stores_factory.stores.S3_store import S3Store"],
        capture_output=True,
        text=True,
    )
    assert "ImportError: S3Store ships in a separate distribution" in seed_import.stderr
    assert 'pip install "cached-stores-factory[s3]"' in seed_import.stderr


def test_the_version_is_the_core_distribution_s() -> None:
    assert __version__ == metadata.version("cached-stores-factory-core")


def test_each_hook_function_runs_once_when_another_plugin_s_hook_raises(site: Path) -> None:
    (site / "csf_once_calls.py").write_text("CALLS = []\n")
    install_distribution(
        site,
        "csf-first",
        "csf_first",
        """
        import csf_once_calls
        from cached_stores_factory import MemoryStore, hookimpl

        @hookimpl(tryfirst=True)
        def csf_register_stores(register):
            csf_once_calls.CALLS.append("first")
            register("first", MemoryStore)
        """,
    )
    install_distribution(
        site,
        "csf-raises",
        "csf_raises",
        """
        from cached_stores_factory import hookimpl

        @hookimpl(trylast=True)
        def csf_register_stores(register):
            raise LookupError("no such backend")
        """,
    )
    registry = PluginRegistry()
    assert registry.get("store", "first").distribution == "csf-first"
    with pytest.raises(PluginLoadError, match="no such backend"):
        registry.get("store", "csf_raises")
    import csf_once_calls  # type: ignore[import-not-found]

    assert csf_once_calls.CALLS == ["first"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("    register('bad', MemoryStore)\n    return\n    yield", "did not yield"),
        ("    register('bad', MemoryStore)\n    yield\n    yield", "yielded twice"),
        ("    register('bad', MemoryStore)", "'NoneType' object is not an iterator"),
        ("    yield\n    register('bad', MemoryStore)\n    raise KeyError('late')", "late"),
    ],
    ids=["no-yield", "two-yields", "not-a-generator", "raises-after-yield"],
)
def test_a_wrapper_that_breaks_pluggy_s_protocol_fails_alone(
    site: Path, body: str, error: str, request: pytest.FixtureRequest
) -> None:
    module = "csf_" + request.node.callspec.id.replace("-", "_")  # a fresh module each
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(
        site,
        "csf-outer",
        "csf_outer",
        """
        from cached_stores_factory import MemoryStore, hookimpl

        @hookimpl(tryfirst=True, wrapper=True)
        def csf_register_stores(register):
            register("outer", MemoryStore)
            return (yield)
        """,
    )
    source = (
        "from cached_stores_factory import MemoryStore, hookimpl\n\n"
        f"@hookimpl(wrapper=True)\ndef csf_register_stores(register):\n{body}\n"
    )
    install_distribution(site, "csf-odd", module, source)
    registry = PluginRegistry()
    assert {"echo", "outer"} <= set(registry.names("store"))
    assert "bad" not in registry.names("store")
    assert registry.get("store", "outer").distribution == "csf-outer"
    [record] = [p for p in registry.plugins() if p.error is not None]
    assert (record.name, record.distribution) == (module, "csf-odd")
    assert error in str(record.error)


def test_a_failed_plugin_s_later_hooks_do_not_run(site: Path) -> None:
    (site / "csf_later_calls.py").write_text("CALLS = []\n")
    install_distribution(
        site,
        "csf-early-fail",
        "csf_early_fail",
        """
        import csf_later_calls
        from cached_stores_factory import hookimpl

        @hookimpl
        def csf_register_stores(register):
            raise LookupError("store hook broke")

        @hookimpl
        def csf_register_serializers(register):
            csf_later_calls.CALLS.append("serializers")
        """,
    )
    registry = PluginRegistry()
    with pytest.raises(PluginLoadError, match="store hook broke"):
        registry.get("store", "csf_early_fail")
    import csf_later_calls  # type: ignore[import-not-found]

    assert csf_later_calls.CALLS == []


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("register('', MemoryStore)", "a component name must be a non-empty str, not ''"),
        ("register('bad', 42)", "the factory for 'bad' is not callable nor 'module:attribute'"),
        ("register('bad', 'no_colon')", "the factory for 'bad' is not callable nor"),
    ],
    ids=["empty-name", "not-callable", "no-colon"],
)
def test_a_malformed_registration_fails_its_plugin_alone(
    site: Path, call: str, error: str, request: pytest.FixtureRequest
) -> None:
    module = "csf_" + request.node.callspec.id.replace("-", "_")  # a fresh module each
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    source = (
        "from cached_stores_factory import MemoryStore, hookimpl\n\n"
        f"@hookimpl\ndef csf_register_stores(register):\n    register('kept', MemoryStore)\n"
        f"    {call}\n"
    )
    install_distribution(site, "csf-malformed", module, source)
    registry = PluginRegistry()
    assert registry.get("store", "echo").name == "echo"
    assert "kept" not in registry.names("store")
    [record] = [p for p in registry.plugins() if p.error is not None]
    assert type(record.error) is TypeError
    assert error in str(record.error)


@pytest.mark.parametrize("options", ["", "(wrapper=True)"], ids=["hook", "wrapper"])
def test_a_hook_function_whose_register_has_a_default_gets_it_by_keyword(
    site: Path, options: str, request: pytest.FixtureRequest
) -> None:
    """pluggy passes an argument that has a default by keyword: the plugin still gets its
    `register`, and the other plugins load."""
    module = "csf_defaulted_" + request.node.callspec.id
    body = "    register('defaulted', MemoryStore)\n" + ("    return (yield)\n" if options else "")
    source = (
        "from cached_stores_factory import MemoryStore, hookimpl\n\n"
        f"@hookimpl{options}\ndef csf_register_stores(register=None):\n{body}"
    )
    install_distribution(site, "csf-echo", "csf_echo", ECHO_PLUGIN)
    install_distribution(site, "csf-defaulted", module, source)
    registry = PluginRegistry()
    assert [p.name for p in registry.plugins() if p.error is not None] == []
    assert registry.get("store", "defaulted").plugin == module
    assert registry.get("store", "echo").name == "echo"
