"""The `csf` command: operate a cached store from the shell.

argparse, not click: it is in the standard library, costs no import time, and a parent parser
shared by the top level and every subcommand lets options come before or after the
subcommand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib.metadata import entry_points
from typing import Any, BinaryIO

from ._engine import CachedStore
from ._exposition import hit_ratio, prometheus_text
from ._factory import CachedStoreFactory
from ._keys import is_reserved
from ._progress import Meter, MeteredStore
from ._version import PLUGIN_API, __version__
from .errors import ConfigError, CSFError, KeyNotFoundError, ObjectArchivedError, StoreError
from .plugins import BUILTINS, CORE_DISTRIBUTION, PluginRegistry, registry

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LS_BAR_KEYS = 1000  # `ls` draws a bar from this many keys: each may cost a remote stat
PACKAGE_LOGGER = "cached_stores_factory"  # the core's and the first-party plugins' loggers
FSSPEC_GROUP, FSSPEC_MODULE = "fsspec.specs", "cached_stores_factory_fsspec"


# -- plugins and versions ---------------------------------------------------------------------


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
        if record.disabled:
            problem: str | None = "disabled by CSF_DISABLE_PLUGINS"
        elif record.error is not None:
            problem = f"{type(record.error).__name__}: {record.error}"
        else:  # loaded, maybe with a hook skipped
            problem = "; ".join(record.problems) or None
        if problem is not None:
            rows.append(
                {
                    "kind": None,
                    "name": record.name,
                    "distribution": record.distribution,
                    "version": record.version,
                    "error": problem,
                }
            )
    return rows


def _print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    table = [[str(cell if cell is not None else "-") for cell in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in table)]) for i, h in enumerate(headers)]
    for line in [list(headers), *table]:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _cmd_plugins(args: argparse.Namespace) -> int:
    rows = _plugin_rows(registry)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        headers = ("kind", "name", "distribution", "version", "error")
        _print_table(headers, ([row[h] for h in headers] for row in rows))
    return EXIT_OK


def _versions() -> str:
    """core's version, then each installed plugin's, one a line."""
    lines = [f"csf {__version__} ({CORE_DISTRIBUTION}, plugin API {PLUGIN_API})"]
    for record in registry.plugins():
        if record.name == BUILTINS:
            continue
        state = " [disabled]" if record.disabled else " [failed to load]" if record.error else ""
        lines.append(
            f"plugin {record.name} {record.version or '?'} "
            f"({record.distribution or 'unknown distribution'}){state}"
        )
    # The fsspec filesystem registers with fsspec, not with csf: found through fsspec's group.
    for spec in entry_points(group=FSSPEC_GROUP):
        if spec.value.startswith(FSSPEC_MODULE) and spec.dist is not None:
            lines.append(f"fsspec {spec.name}:// {spec.dist.version} ({spec.dist.name})")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """`--version`: the plugins are loaded only when it is asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        print(_versions())
        parser.exit()


# -- building the store -----------------------------------------------------------------------


def _meter(args: argparse.Namespace) -> Meter:
    return Meter(not args.quiet and (args.progress or sys.stderr.isatty()))


def _build(args: argparse.Namespace, *, metered: bool = False) -> CachedStore:
    """The configured cached store; `metered` draws a bar for each large remote transfer."""
    config = args.config or os.environ.get("CSF_CONFIG")
    if not config:
        raise ConfigError("no config: pass -c/--config PATH or set CSF_CONFIG")
    factory = CachedStoreFactory.from_config(config)
    if metered:  # still built by a factory, so the policy gets the counters to share
        remote = MeteredStore(factory.remote_store, _meter(args))
        parts = (factory.local_store, remote, factory.cache_policy)
        factory = CachedStoreFactory(*parts, serializer=factory.serializer)
    return factory.build()


class _Warnings(logging.Handler):
    """The library's warnings on stderr, as `csf: warning: ...` lines.

    A warning about a failure (the exception is among its arguments, as in "the remote store
    failed (...)") is held until the command ends: when the command then fails with that
    same error, its error line says it, once; otherwise the warning is printed then.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if any(isinstance(arg, BaseException) for arg in args):
            self.held.append(record)
        else:
            print(f"csf: warning: {record.getMessage()}", file=sys.stderr)

    def finish(self, error: BaseException | None) -> None:
        """Print the held warnings, except those that only repeat `error`."""
        for record in self.held:
            if error is None or str(error) not in record.getMessage():
                print(f"csf: warning: {record.getMessage()}", file=sys.stderr)
        self.held.clear()


def _note(args: argparse.Namespace, message: str) -> None:
    """A message for the operator, on stderr; --quiet drops it."""
    if not args.quiet:
        print(message, file=sys.stderr)


# -- subcommands ------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    """Build the store and list one key of each part, all within `--timeout` seconds.

    Nothing is reported ok until both stores have answered: a down server fails the check
    with the store's role, and no "config ok" line above the error.  The probe runs in a
    daemon thread: a server that accepts connections and never answers holds that thread,
    not the command, which fails at the bound naming the stalled step.
    """
    step = ["reading the config and building the store"]
    failure: list[BaseException] = []

    def probe() -> None:
        try:
            store = _build(args)
            parts = (("local", store.local), ("remote", store.remote))
            for role, part in parts:
                step[0] = f"listing the {role} store {part!r}"
                try:
                    next(iter(part.keys()), None)  # one listing call proves the store answers
                except (CSFError, OSError) as exc:
                    raise CSFError(f"the {role} store {part!r} does not answer: {exc}") from exc
            print(f"config ok: {store!r}", flush=True)
            for role, part in parts:
                print(f"{role} store answers: {type(part).__name__}", flush=True)
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=probe, name="csf-check", daemon=True)
    thread.start()
    thread.join(args.timeout)
    if thread.is_alive():
        raise StoreError(f"check: no answer within {args.timeout:g} s while {step[0]}")
    if failure:
        raise failure[0]
    return EXIT_OK


def _cmd_cat(args: argparse.Namespace) -> int:
    store = _build(args, metered=True)
    with store.open_read(args.key) as entry:
        shutil.copyfileobj(entry.stream, sys.stdout.buffer)
    return EXIT_OK


def _cmd_put(args: argparse.Namespace) -> int:
    store = _build(args, metered=True)
    use_stdin = args.file in (None, "-")
    source: BinaryIO = sys.stdin.buffer if use_stdin else open(args.file, "rb")  # noqa: SIM115
    try:
        store.put_stream(args.key, source)
    finally:
        if not use_stdin:
            source.close()
    return EXIT_OK


def _stored_at(modified: float | None) -> str | None:
    """UTC time of storage, None for a store that can't say."""
    if modified is None:
        return None
    return datetime.fromtimestamp(modified, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ls_rows(store: CachedStore, prefix: str, meter: Meter) -> Iterator[dict[str, Any]]:
    """One row per key of either store: a local copy's stat and freshness, else the remote's."""
    # The blocks of objects read in ranges are bookkeeping of the cache, not keys of its own;
    # a remote key under their prefix is one the cached store refuses.
    local = {key for key in store.local.keys(prefix) if not is_reserved(key)}
    remote = set(store.keys(prefix))
    keys = sorted(local | remote)
    with meter.bar("listing", len(keys), unit="key", at_least=LS_BAR_KEYS) as advance:
        for key in keys:
            advance(1)
            state = None
            try:
                stat = store.local.stat(key) if key in local else None
            except KeyNotFoundError:  # dropped since the listing
                stat, local = None, local - {key}
            if stat is not None:
                state = "fresh" if store.policy.is_fresh(key, stat) else "stale"
            else:
                try:
                    stat = store.remote.stat(key)
                except KeyNotFoundError:
                    continue
            yield {
                "key": key,
                "size": stat.size,
                "stored": _stored_at(stat.modified),
                "state": state,
                "local": key in local,
                "remote": key in remote,
            }


def _cmd_ls(args: argparse.Namespace) -> int:
    store = _build(args)
    rows = list(_ls_rows(store, args.prefix, _meter(args)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    where = {(True, True): "local+remote", (True, False): "local", (False, True): "remote"}
    _print_table(
        ("key", "size", "stored", "state", "where"),
        (
            (
                r["key"],
                r["size"],
                r["stored"] or "unknown",
                r["state"],
                where[r["local"], r["remote"]],
            )
            for r in rows
        ),
    )
    return EXIT_OK


def _each_key(
    args: argparse.Namespace, keys: Sequence[str], action: Callable[[str], bool], missing: str
) -> int:
    """Run `action` on every key; a key it finds nothing for is reported, and fails the run."""
    failed = 0
    for key in keys:
        if not action(key):
            print(f"csf: {args.command}: {missing} {key!r}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def _cmd_rm(args: argparse.Namespace) -> int:
    store = _build(args)
    return _each_key(args, args.keys, store.delete, "no entry for key")


def _cmd_invalidate(args: argparse.Namespace) -> int:
    store = _build(args)
    for key in args.keys:
        if not store.invalidate(key):
            _note(args, f"csf: invalidate: no local copy of {key!r}")
    return EXIT_OK


def _cmd_purge(args: argparse.Namespace) -> int:
    store = _build(args)
    removed = store.clear() if args.all else store.purge()
    _note(args, f"removed {removed} local {'copy' if removed == 1 else 'copies'}")
    return EXIT_OK


def _keys_to_warm(args: argparse.Namespace) -> list[str]:
    keys = list(args.keys)
    if args.from_file:
        if args.from_file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.from_file, encoding="utf-8") as listing:
                lines = listing.read().splitlines()
        keys += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not keys:
        raise ConfigError("warm needs KEYs or --from FILE")
    return keys


def _each_in_parallel(
    args: argparse.Namespace, label: str, keys: Sequence[str], action: Callable[[str], Any]
) -> dict[str, Any]:
    """`action` on every key, `--jobs` at a time under a progress bar: each key's result, or
    the error it raised."""

    def run(key: str) -> Any:
        try:
            return action(key)
        except (CSFError, OSError, KeyError) as exc:
            return exc

    results = {}
    with (
        ThreadPoolExecutor(max_workers=args.jobs) as pool,
        _meter(args).bar(label, len(keys), unit="key", at_least=1) as advance,
    ):
        for key, result in zip(keys, pool.map(run, keys), strict=True):
            advance(1)
            results[key] = result
    return results


def _cmd_warm(args: argparse.Namespace) -> int:
    keys = _keys_to_warm(args)
    store = _build(args)

    def warm(keys: list[str]) -> dict[str, BaseException]:
        """The keys a fetch into the local store failed for, and why."""
        fetched = _each_in_parallel(args, "warming", keys, lambda k: store.open_read(k).close())
        return {k: error for k, error in fetched.items() if isinstance(error, BaseException)}

    errors = warm(keys)
    archived = [key for key, error in errors.items() if isinstance(error, ObjectArchivedError)]
    if args.wait and archived:
        remote = _restorer(store)
        states = _request_restores(args, remote, archived)
        errors.update({k: s for k, s in states.items() if isinstance(s, BaseException)})
        waiting = [k for k, s in states.items() if not isinstance(s, BaseException)]
        pending = set(_wait_restored(args, remote, waiting))
        restored = [key for key in waiting if key not in pending]
        for key in restored:
            del errors[key]
        errors.update(warm(restored))
    for key, error in errors.items():
        print(f"csf: warm: {key!r}: {error}", file=sys.stderr)
    failed = len(errors)
    stats = store.stats()
    _note(
        args,
        f"warmed {len(keys) - failed} of {len(keys)} keys: {stats['remote_reads']} fetched "
        f"({stats['bytes_from_remote']} bytes), {stats['hits']} already fresh",
    )
    return EXIT_FAILED if failed else EXIT_OK


def _restorer(store: CachedStore) -> Any:
    """The remote store, if it keeps archived objects (S3Store: `request_restore`)."""
    remote = store.remote
    if not callable(getattr(remote, "request_restore", None)):
        raise ConfigError(
            f"the remote store {remote!r} keeps no archived objects: restoring needs S3"
        )
    return remote


def _request_restores(args: argparse.Namespace, remote: Any, keys: Sequence[str]) -> dict[str, Any]:
    """Ask for each key's restore, several at a time: its RestoreState, or the error."""
    return _each_in_parallel(
        args,
        "restoring",
        keys,
        lambda key: remote.request_restore(key, days=args.days, tier=args.tier),
    )


def _wait_restored(args: argparse.Namespace, remote: Any, keys: Sequence[str]) -> list[str]:
    """Poll every `--interval` seconds until each key is readable or `--timeout` passes;
    return the keys still archived then."""
    deadline = time.monotonic() + args.timeout
    pending = list(keys)
    with _meter(args).bar("waiting for restores", len(pending), unit="key", at_least=1) as advance:
        while pending:
            still = []
            for key in pending:
                state = remote.restore_state(key)
                if state.readable:
                    advance(1)
                    until = f" until {state.expiry}" if state.expiry else ""
                    _note(args, f"csf: {args.command}: {key!r} is readable{until}")
                else:
                    still.append(key)
            pending = still
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            time.sleep(min(args.interval, left))
    for key in pending:
        print(
            f"csf: {args.command}: {key!r} is not restored after {args.timeout:g} s; "
            "run the command again later",
            file=sys.stderr,
        )
    return pending


def _cmd_restore(args: argparse.Namespace) -> int:
    store = _build(args)
    remote = _restorer(store)
    listed = sorted(remote.keys(args.target))
    keys = [args.target] if args.target in listed else listed
    if not keys:
        print(f"csf: restore: no object at or under {args.target!r}", file=sys.stderr)
        return EXIT_FAILED
    states = _request_restores(args, remote, keys)
    rows, failed = [], 0
    for key, state in states.items():
        if isinstance(state, BaseException):
            failed += 1
            print(f"csf: restore: {key!r}: {state}", file=sys.stderr)
        else:
            rows.append((key, state.storage_class, state.state, state.expiry))
    _print_table(("key", "storage class", "restore", "readable until"), rows)
    if args.wait:
        waiting = [row[0] for row in rows if row[2] not in ("readable", "done")]
        failed += len(_wait_restored(args, remote, waiting))
    return EXIT_FAILED if failed else EXIT_OK


_BOUNDED_USAGE = {"local_entries": "max_entries", "local_bytes": "max_bytes"}  # usage: bound


def _shown(name: str, value: Any) -> str:
    """A report's value as the table prints it: the hit ratio as a percentage."""
    if name == "hit_ratio":
        return "- (no reads yet)" if value is None else f"{value:.1%}"
    return str(value)


def _cmd_stats(args: argparse.Namespace) -> int:
    store = _build(args)
    for key in args.keys:
        with store.open_read(key) as entry:
            entry.read()
    local_keys = list(store.local.keys())
    limits = store.policy.limits()

    counters = store.stats()
    report: dict[str, Any] = {
        "local_entries": len(local_keys),
        "max_entries": limits.get("entries"),
        "local_bytes": sum(store.local.stat(k).size for k in local_keys),
        "max_bytes": limits.get("bytes"),
        **counters,
        "hit_ratio": hit_ratio(counters),
        "source": "this csf process only",
        "fleet": None,
    }
    fleet = store.policy.fleet_stats()  # this process's counts are added first
    store.close()
    if args.prometheus:
        if fleet is None:
            raise CSFError("stats --prometheus: the policy shares no counters between processes")
        print(prometheus_text(*fleet), end="")
        return EXIT_OK
    if fleet is not None:
        where, counts = fleet
        report["fleet"] = {
            "source": f"every process sharing the {where}",
            **counts,
            "hit_ratio": hit_ratio(counts),
        }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_stats(report)
    return EXIT_OK


def _print_stats(report: dict[str, Any]) -> None:
    for name, value in report.items():
        if name == "fleet" or name.startswith("max_"):
            continue  # a bound is shown next to its usage
        line = _shown(name, value)
        if name in _BOUNDED_USAGE:
            bound = report[_BOUNDED_USAGE[name]]
            line += " (no bound)" if bound is None else f" of at most {bound}"
        print(f"{name:<18} {line}")
    if report["fleet"] is None:
        print("fleet              none: the policy shares no counters between processes")
    else:
        print(f"fleet              summed over {report['fleet']['source']}")
        for name, value in report["fleet"].items():
            if name != "source":
                print(f"  {name:<16} {_shown(name, value)}")


def _cmd_new_plugin(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ._template import write_plugin

    directory = Path(args.dir or f"csf-{args.name}")
    written = write_plugin(args.name, directory)
    print(f"wrote the plugin {args.name!r} into {directory}/:")
    for path in written:
        print(f"  {path.relative_to(directory)}")
    print(f'test it: cd {directory} && pip install -e ".[test]" && python -m pytest -q')
    return EXIT_OK


# -- the parser -------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    """Options every level accepts.  SUPPRESS keeps a subcommand from resetting a value given
    before it; `main` fills the defaults afterwards."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="TOML config file (default: $CSF_CONFIG)"
    )
    group.add_argument(
        "--progress",
        action="store_true",
        default=argparse.SUPPRESS,
        help="draw progress bars even when stderr is not a terminal",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="no progress bars and no notes on stderr",
    )
    group.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return common


_DEFAULTS = {"config": None, "progress": False, "quiet": False, "debug": False}


def _parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="csf",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        parents=[common],
        epilog="Run 'csf COMMAND --help' for a command's options and an example.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print core's and each plugin's version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, run: Callable[[argparse.Namespace], int], summary: str, example: str
    ) -> argparse.ArgumentParser:
        parsed = sub.add_parser(
            name,
            parents=[common],
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parsed.set_defaults(run=run)
        return parsed

    def json_option(parsed: argparse.ArgumentParser) -> None:
        parsed.add_argument("--json", action="store_true", help="print JSON")

    def restore_options(parsed: argparse.ArgumentParser, wait: str) -> None:
        parsed.add_argument("--wait", action="store_true", help=wait)
        parsed.add_argument(
            "--days",
            type=_positive,
            help="keep restored copies this many days (default: the store's restore_days, or 1)",
        )
        parsed.add_argument(
            "--tier",
            help="S3 retrieval tier: Standard, Bulk or Expedited (default: the store's)",
        )
        parsed.add_argument(
            "--interval",
            type=_seconds,
            default=60.0,
            metavar="SECONDS",
            help="with --wait: seconds between polls (default: 60)",
        )
        parsed.add_argument(
            "--timeout",
            type=_seconds,
            default=48 * 3600.0,
            metavar="SECONDS",
            help="with --wait: give up after this long (default: 48 hours)",
        )

    json_option(
        command(
            "plugins",
            _cmd_plugins,
            "list installed stores, policies and serializers, and plugins that failed",
            "csf plugins --json",
        )
    )
    command(
        "check",
        _cmd_check,
        "check the config's names and argument types, build the store, reach both stores",
        "csf check -c cache.toml --timeout 10",
    ).add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="fail if the whole check takes longer (default: 30)",
    )
    command(
        "cat",
        _cmd_cat,
        "write an entry to stdout, read through the cache",
        "csf cat reports/q1.csv",
    ).add_argument("key")
    put = command(
        "put",
        _cmd_put,
        "write an entry from FILE or stdin, through to the remote",
        "csf put reports/q1.csv ./q1.csv",
    )
    put.add_argument("key")
    put.add_argument("file", nargs="?", help="a file, or - for stdin (the default)")
    ls = command(
        "ls",
        _cmd_ls,
        "list entries under PREFIX: size, stored time, fresh or stale, local or remote",
        "csf ls reports/ --json",
    )
    ls.add_argument("prefix", nargs="?", default="", help="a key prefix (default: every key)")
    json_option(ls)
    command(
        "rm", _cmd_rm, "delete entries from the remote and the local store", "csf rm old/a old/b"
    ).add_argument("keys", nargs="+", metavar="KEY")
    command(
        "invalidate",
        _cmd_invalidate,
        "drop local copies only; the next read fetches from the remote",
        "csf invalidate reports/q1.csv",
    ).add_argument("keys", nargs="+", metavar="KEY")
    command(
        "purge",
        _cmd_purge,
        "drop the local copies the policy says are stale (--all: every local copy)",
        "csf purge --all",
    ).add_argument("--all", action="store_true", help="drop every local copy, fresh or not")
    warm = command(
        "warm",
        _cmd_warm,
        "fetch entries into the local store ahead of use, several at a time",
        "csf warm --from keys.txt --jobs 8",
    )
    warm.add_argument("keys", nargs="*", metavar="KEY")
    warm.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read keys from FILE, one a line (- for stdin; # starts a comment)",
    )
    warm.add_argument(
        "-j", "--jobs", type=_positive, default=4, help="fetches at once (default: 4)"
    )
    restore_options(warm, "archived keys: request their restore, wait, then fetch them")
    restore = command(
        "restore",
        _cmd_restore,
        "ask S3 to restore archived objects (a KEY, or every object under a PREFIX)",
        "csf restore logs/2024/ --days 3 --tier Bulk --wait",
    )
    restore.add_argument("target", metavar="KEY|PREFIX")
    restore.add_argument(
        "-j", "--jobs", type=_positive, default=8, help="requests at once (default: 8)"
    )
    restore_options(restore, "poll until every object is readable")
    stats = command(
        "stats",
        _cmd_stats,
        "read KEYs through the cache, then show the local store's usage next to the "
        "policy's bounds, this process's counters, the fleet's totals and hit ratios",
        "csf stats reports/q1.csv --json",
    )
    stats.add_argument("keys", nargs="*", metavar="KEY")
    json_option(stats)
    stats.add_argument(
        "--prometheus",
        action="store_true",
        help="print the fleet's counters in Prometheus' text format (for a textfile collector)",
    )
    new_plugin = command(
        "new-plugin",
        _cmd_new_plugin,
        "write a plugin distribution: a store, a policy and a serializer, with their tests",
        "csf new-plugin acme --dir ./csf-acme",
    )
    new_plugin.add_argument("name", help="the plugin's name, such as 'acme' or 'acme-cache'")
    new_plugin.add_argument("--dir", help="where to write it (default: ./csf-NAME)")
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the exit-time flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name, default in _DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    run: Callable[[argparse.Namespace], int] = args.run
    warnings = _Warnings()
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.addHandler(warnings)
    try:
        code = run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`csf ls | head`): stop quietly, as other Unix tools do.
        _quiet_stdout()
        return EXIT_OK
    except (ConfigError, CSFError, OSError, KeyError) as exc:
        if args.debug:
            raise
        warnings.finish(exc)
        print(f"csf: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ConfigError) else EXIT_FAILED
    finally:
        logger.removeHandler(warnings)
        warnings.finish(None)  # what is still held
    return code


if __name__ == "__main__":
    sys.exit(main())
