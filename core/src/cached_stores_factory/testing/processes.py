"""A store opened in another process and driven one call at a time, for tests of what holds
across processes (fences, leases): the test decides the interleaving, step by step.

    with StoreProcess(functools.partial(TempfileStore, "t", root=root)) as other:
        token = other.call("fence", "k")

The process is spawned, not forked, so it shares nothing with the test but the store's own
medium (a directory, a Redis server).  `factory` must pickle: a class or a
`functools.partial` of one.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Self

from .._store import Store
from ..errors import KeyNotFoundError

__all__ = ["StoreProcess", "StoreProcessError"]


class StoreProcessError(RuntimeError):
    """A call raised in the other process; the message is its type and text."""


def _calls(store: Store) -> dict[str, Callable[..., Any]]:
    """What a test may ask: the fence contract, and a read that says None for a miss."""

    def read(key: str) -> bytes | None:
        try:
            return store.get(key)
        except KeyNotFoundError:
            return None

    return {
        "fence": store.fence,
        "put_fenced": lambda key, data, fence: store.put_fenced(
            key, io.BytesIO(data), etag=None, fence=fence
        ),
        "begin_change": lambda key, hold: store.begin_change(key, hold=hold),
        "end_change": store.end_change,
        "move_fences": store.move_fences,
        "read": read,
    }


def _serve(factory: Callable[[], Store], connection: Connection) -> None:
    with factory() as store:
        calls = _calls(store)
        while (request := connection.recv()) is not None:
            method, args = request
            try:
                connection.send((True, calls[method](*args)))
            except Exception as exc:
                connection.send((False, f"{type(exc).__name__}: {exc}"))


class StoreProcess:
    """A store built by `factory` in a spawned process, which `call` drives."""

    def __init__(self, factory: Callable[[], Store]) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(factory, child), daemon=True)
        self.process.start()
        child.close()

    def call(self, method: str, *args: Any, timeout: float = 60.0) -> Any:
        """Run `method` ("fence", "put_fenced", "begin_change", "end_change", "move_fences",
        "read") there.

        "put_fenced" takes (key, data, fence), "begin_change" (key, hold).  A call that has
        not answered within `timeout` seconds raises TimeoutError: a test that finds a
        process blocked fails instead of hanging.
        """
        self._connection.send((method, args))
        if not self._connection.poll(timeout):
            raise TimeoutError(f"{method}{args!r} did not answer within {timeout} s")
        ok, value = self._connection.recv()
        if not ok:
            raise StoreProcessError(value)
        return value

    def close(self) -> None:
        """Ask the process to close its store and end; kill it if it does not within 30 s."""
        if self.process.is_alive():
            with contextlib.suppress(OSError):  # it died: nothing to ask
                self._connection.send(None)
            self.process.join(30)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(10)
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
