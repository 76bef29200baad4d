"""Make `policies_testlib` importable, here and in the worker processes the tests spawn."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
