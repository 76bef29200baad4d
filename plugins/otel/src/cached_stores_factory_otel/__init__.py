"""cached-stores-factory plugin 'otel': OpenTelemetry metrics and traces of the cached stores.

It registers one event listener, `OTelListener`, which the process-wide registry starts when
it first loads (reading a config does).  A program that builds its cached stores in code
without reading a config subscribes one itself:

    from cached_stores_factory.events import dispatcher
    from cached_stores_factory_otel import OTelListener

    dispatcher.subscribe(OTelListener())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cached_stores_factory import hookimpl
from cached_stores_factory.hookspecs import Register, lazy_exports

if TYPE_CHECKING:
    from ._listener import HIT_SAMPLE, OTelListener

__all__ = ["HIT_SAMPLE", "OTelListener"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "._listener"))
CSF_PLUGIN_API = (1, 1)  # the core plugin API versions this plugin works with


@hookimpl
def csf_register_listeners(register: Register) -> None:
    register("otel", "cached_stores_factory_otel:OTelListener")
