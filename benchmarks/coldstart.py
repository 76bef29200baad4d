"""Cold start: a fresh process that builds a store from config, beside one that only scans."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

from ._harness import REPORT, Row, Sizes, Target, median_times, unavailable
from ._parts import PartMissing, part

FIGURE = "cold start: import + build tempfile/memory store from config vs entry-point scan"
TARGET = Target("ratio", "<=", 1.5)
HEAVY = ("boto3", "botocore", "redis")
HEAVY_FIGURE = "cold start: of boto3, botocore, redis, modules imported"
HEAVY_TARGET = Target("value", "==", 0, "modules")

TTL_FIGURE = "cold start, with a TTL policy in the config, vs entry-point scan"
HIT_FIGURE = "cold start, then one 4 KiB hit, vs entry-point scan"
BUILD = textwrap.dedent(
    """
    import sys
    from cached_stores_factory import CachedStoreFactory
    config = {{
        "local": {{"store": "tempfile", "name": "csf-bench-cold", "root": {root!r}}},
        "remote": {{"store": "memory"}},
        {policy}
    }}
    store = CachedStoreFactory.from_config(config).build()
    {then}
    print(",".join(m for m in {heavy!r} if m in sys.modules))  # not json: the harness, not ours
    """
)
HIT_KEY = "cold/hit.bin"
SCAN = textwrap.dedent(
    """
    from importlib.metadata import entry_points
    print(len(entry_points(group="cached_stores_factory")))
    """
)


def child_environment(pycache: str) -> dict[str, str]:
    """Python's default bytecode caching, in a private directory both contenders share.

    A shell with PYTHONDONTWRITEBYTECODE set would recompile every module of ours on each
    start while the standard library's cached bytecode still loads: that measures the
    shell, not the library.  The warm-up start fills the cache for both.
    """
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environ["PYTHONPYCACHEPREFIX"] = pycache
    return environ


def _python(code: str, environ: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
    )
    if done.returncode != 0:
        raise RuntimeError(f"a cold-start child failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def run(sizes: Sizes) -> list[Row]:
    try:
        part("TempfileStore")
    except PartMissing as exc:
        return [
            unavailable(FIGURE, TARGET, str(exc)),
            unavailable(TTL_FIGURE, REPORT, str(exc)),
            unavailable(HIT_FIGURE, REPORT, str(exc)),
            unavailable(HEAVY_FIGURE, HEAVY_TARGET, str(exc)),
        ]
    with tempfile.TemporaryDirectory(prefix="csf-bench-cold-") as tmp:
        environ = child_environment(os.path.join(tmp, "pycache"))

        def child(policy: str = "", then: str = "") -> str:
            root = os.path.join(tmp, "store")
            return BUILD.format(root=root, heavy=HEAVY, policy=policy, then=then)

        build = child()
        heavy = [name for name in _python(build, environ).strip().split(",") if name]
        # The hit child's entry, stored once: no policy, so it stays fresh for every child.
        _python(child(then=f"store.put({HIT_KEY!r}, bytes(4096))"), environ)
        with_ttl = child(policy='"policy": {"name": "ttl", "interval": 60},')
        with_hit = child(then=f"assert len(store.open({HIT_KEY!r}).read()) == 4096")
        medians = median_times(
            {
                "ours": lambda: _python(build, environ),
                "scan": lambda: _python(SCAN, environ),
                "ttl": lambda: _python(with_ttl, environ),
                "hit": lambda: _python(with_hit, environ),
            },
            rounds=sizes.cold_rounds,
            inner=1,
            warmup=1,
        )
    note = "median wall time of whole child processes, as in the row above"
    return [
        Row(
            FIGURE,
            TARGET,
            medians["ours"] * 1e3,
            medians["scan"] * 1e3,
            "ms/process",
            "median wall time of whole child processes, interpreter start included, "
            "bytecode cached (PYTHONPYCACHEPREFIX in a temp dir, warmed)",
        ),
        Row(TTL_FIGURE, REPORT, medians["ttl"] * 1e3, medians["scan"] * 1e3, "ms/process", note),
        Row(HIT_FIGURE, REPORT, medians["hit"] * 1e3, medians["scan"] * 1e3, "ms/process", note),
        Row(
            HEAVY_FIGURE,
            HEAVY_TARGET,
            len(heavy),
            unit="modules",
            note=f"imported: {', '.join(heavy) or 'none'}",
        ),
    ]
