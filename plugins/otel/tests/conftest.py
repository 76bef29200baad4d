"""The otel plugin is not installed in the development environment.

Installed, it is a listener every process starts when it reads a config, and imports
OpenTelemetry then: the cold-start tests and benchmarks measure the core without it.  Its
tests import it from its source folder, and install it (into a folder of their own) only to
check that it is found through its entry point.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
