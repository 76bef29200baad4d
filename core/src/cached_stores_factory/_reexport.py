"""First-party components outside the core, and the original examples' import paths for them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

Kind = Literal["store", "policy", "serializer", "listener"]

# (kind, name) -> (entry-point name, pip extra).  An empty extra means the plain
# `pip install cached-stores-factory` brings it.
FIRST_PARTY: dict[tuple[Kind, str], tuple[str, str]] = {
    ("store", "tempfile"): ("tempfile", ""),
    ("store", "redis"): ("redis", "redis"),
    ("store", "s3"): ("s3", "s3"),
    ("store", "fsspec"): ("fsspec", "fsspec"),
    ("policy", "ttl"): ("policies", ""),
    ("policy", "fifo"): ("policies", ""),
    ("policy", "lru"): ("policies", ""),
}


def install_hint(kind: Kind, name: str) -> str | None:
    """The pip command that installs a first-party component, or None for other names."""
    if (kind, name) not in FIRST_PARTY:
        return None
    extra = FIRST_PARTY[kind, name][1]
    return (
        f'pip install "cached-stores-factory[{extra}]"'
        if extra
        else "pip install cached-stores-factory"
    )


def resolver(module: str, names: Mapping[str, tuple[Kind, str]]) -> Callable[[str], Any]:
    """A module `__getattr__` that finds each of `names` in the plugin registry by kind and name.

    So the original examples' import paths work without the core importing any plugin: the
    class comes from whichever distribution registers the name, found when first imported.
    A first-party plugin that is not installed raises ImportError naming its pip command.
    """

    def __getattr__(attribute: str) -> Any:
        if attribute not in names:
            raise AttributeError(f"module {module!r} has no attribute {attribute!r}")
        kind, name = names[attribute]
        from .errors import PluginNotFoundError
        from .plugins import registry

        try:
            return registry.get(kind, name).factory
        except PluginNotFoundError as exc:
            hint = install_hint(kind, name)
            reason = f"not installed: {hint}" if "unknown" in str(exc) else str(exc)
            raise ImportError(
                f"{attribute} ships in a separate distribution that is {reason}", name=module
            ) from None

    return __getattr__
