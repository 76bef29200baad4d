"""The `csf` command: list plugins, check a config, read and write entries, show stats."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, BinaryIO

from ._engine import CachedStore
from ._factory import CachedStoreFactory
from .errors import ConfigError, CSFError
from .plugins import PluginRegistry, registry

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _plugin_rows(plugins: PluginRegistry) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "kind": c.kind,
            "name": c.name,
            "distribution": c.distribution,
            "version": c.version,
            "error": None,
        }
        for c in plugins.components()
    ]
    for record in plugins.plugins():
        if record.error is not None or record.disabled:
            rows.append(
                {
                    "kind": None,
                    "name": record.name,
                    "distribution": record.distribution,
                    "version": record.version,
                    "error": "disabled by CSF_DISABLE_PLUGINS"
                    if record.disabled
                    else f"{type(record.error).__name__}: {record.error}",
                }
            )
    return rows


def _cmd_plugins(args: argparse.Namespace) -> int:
    rows = _plugin_rows(registry)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    headers = ("kind", "name", "distribution", "version", "error")
    table = [[str(row[h] if row[h] is not None else "-") for h in headers] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    for line in [list(headers), *table]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    return EXIT_OK


def _build(args: argparse.Namespace) -> CachedStore:
    config = args.config or os.environ.get("CSF_CONFIG")
    if not config:
        raise ConfigError("no config: pass -c/--config PATH or set CSF_CONFIG")
    return CachedStoreFactory.from_config(config).build()


def _cmd_check(args: argparse.Namespace) -> int:
    store = _build(args)
    print(f"config ok: {store!r}")
    for role, part in (("local", store.local), ("remote", store.remote)):
        list(islice(part.keys(), 1))  # one listing call proves the store answers
        print(f"{role} store answers: {type(part).__name__}")
    return EXIT_OK


def _cmd_cat(args: argparse.Namespace) -> int:
    store = _build(args)
    with store.open(args.key, "rb") as source:
        shutil.copyfileobj(source, sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return EXIT_OK


def _cmd_put(args: argparse.Namespace) -> int:
    store = _build(args)
    use_stdin = args.file in (None, "-")
    source: BinaryIO = sys.stdin.buffer if use_stdin else open(args.file, "rb")  # noqa: SIM115
    try:
        with store.open(args.key, "wb") as target:
            shutil.copyfileobj(source, target)
    finally:
        if not use_stdin:
            source.close()
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    store = _build(args)
    for key in args.keys:
        with store.open_read(key) as entry:
            entry.read()
    local_keys = list(store.local.keys())
    report: dict[str, Any] = {
        "local_entries": len(local_keys),
        "local_bytes": sum(store.local.stat(k).size for k in local_keys),
        **store.stats(),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, value in report.items():
            print(f"{name:<18} {value}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csf", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-c", "--config", help="TOML config file (default: $CSF_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    plugins = sub.add_parser("plugins", help="list installed stores, policies and serializers")
    plugins.add_argument("--json", action="store_true", help="print JSON")
    plugins.set_defaults(run=_cmd_plugins)

    check = sub.add_parser("check", help="build the configured cached store and reach each store")
    check.set_defaults(run=_cmd_check)

    cat = sub.add_parser("cat", help="write an entry to stdout, through the cache")
    cat.add_argument("key")
    cat.set_defaults(run=_cmd_cat)

    put = sub.add_parser("put", help="write an entry from FILE or stdin, through to the remote")
    put.add_argument("key")
    put.add_argument("file", nargs="?", help="a file, or - for stdin (the default)")
    put.set_defaults(run=_cmd_put)

    stats = sub.add_parser("stats", help="read KEYs through the cache, then show the counters")
    stats.add_argument("keys", nargs="*", metavar="KEY")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=_cmd_stats)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except (ConfigError, CSFError, OSError, KeyError) as exc:
        if args.debug:
            raise
        code = EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
        print(f"csf: error: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
