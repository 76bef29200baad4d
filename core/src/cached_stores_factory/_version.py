"""The core's version (the single source: packaging reads it from here) and its plugin API.

`PLUGIN_API` counts incompatible changes to what plugins rely on: the hooks, `register` and the
base classes' required methods.  Additions that old plugins don't notice keep the number.
"""

__version__ = "0.1.0"
PLUGIN_API = 1
