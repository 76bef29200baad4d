"""The core's version (the single source: packaging reads it from here) and its plugin API.

`PLUGIN_API` counts incompatible changes to what plugins rely on: the hooks, `register` and the
base classes' required methods.  Additions that old plugins don't notice keep the number.
"""

from __future__ import annotations

from types import ModuleType

from .errors import PluginLoadError

__version__ = "0.1.0"
PLUGIN_API = 1


def check_plugin_api(module: ModuleType) -> None:
    """Refuse a plugin whose `CSF_PLUGIN_API = (lowest, highest)` leaves out this core's API."""
    declared = getattr(module, "CSF_PLUGIN_API", (1, 1))  # plugins from before the declaration
    if not (isinstance(declared, tuple) and [type(bound) for bound in declared] == [int, int]):
        raise PluginLoadError(f"CSF_PLUGIN_API must be (lowest, highest) ints, not {declared!r}")
    if not declared[0] <= PLUGIN_API <= declared[1]:
        raise PluginLoadError(
            f"it is made for plugin API {declared[0]} to {declared[1]}, but "
            f"cached-stores-factory-core {__version__} provides plugin API {PLUGIN_API}; "
            f"install a release of the plugin made for it"
        )
