"""Write handles across a fork and at interpreter exit, in real processes over a real remote.

Each script runs in its own interpreter with a cached store whose remote is a TempfileStore
in a directory the test reads afterwards, so what a process committed (or did not) outlives it.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cached_stores_factory_tempfile import TempfileStore

MiB = 1024 * 1024
GOOD = b"the good remote copy"

_PRELUDE = """
import os, sys, threading, time
from cached_stores_factory import CachedStoreFactory, MemoryStore
from cached_stores_factory_tempfile import TempfileStore

MiB = 1024 * 1024
CS = CachedStoreFactory(MemoryStore(), TempfileStore("remote", root=ROOT)).build()
WRITING = threading.Event()
"""


def remote(root: Path) -> TempfileStore:
    return TempfileStore("remote", root=str(root))


def run_script(
    root: Path, body: str, *, returncode: int | tuple[int, ...] = 0, send_sigint: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `body` after the prelude (CS: the cached store over the remote at `root`).

    `returncode` is the exit status expected, or a tuple of the statuses allowed.
    """
    script = f"ROOT = {str(root)!r}\n" + _PRELUDE + textwrap.dedent(body)
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        if send_sigint:
            assert process.stdout is not None
            assert process.stdout.readline() == "writing\n"  # the loop runs: interrupt it
            process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    allowed = returncode if isinstance(returncode, tuple) else (returncode,)
    assert process.returncode in allowed, stderr
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


# -- a fork never touches the parent's handle -----------------------------------------------

CHILD_EXITS = {
    # Falls off the end of the script, its copy of the handle still referenced.
    "returns": "pass",
    "sys.exit": "sys.exit(0)",
    # Drops its copy and collects it before exiting normally.
    "collects": "del handle; import gc; gc.collect()",
}


@pytest.mark.parametrize("spilled", [False, True], ids=["in-memory", "spilled-to-disk"])
@pytest.mark.parametrize("child_exit", sorted(CHILD_EXITS))
def test_a_forked_child_leaves_the_parents_open_handle_alone(
    tmp_path: Path, child_exit: str, spilled: bool
) -> None:
    """The child's exit must not flush, close into or commit the handle it inherited."""
    first = 5 * MiB if spilled else 1000  # past the spool's 4 MiB memory limit, or not
    run_script(
        tmp_path,
        f"""
        handle = CS.open("k", "wb")
        handle.write(b"a" * {first})
        handle.write(b"b" * 1000)  # what a buffered spool file would still hold
        pid = os.fork()
        if pid == 0:
            {CHILD_EXITS[child_exit]}
        else:
            _, status = os.waitpid(pid, 0)
            assert os.waitstatus_to_exitcode(status) == 0
            handle.write(b"c" * 1000)
            handle.close()
        """,
    )
    expected = b"a" * first + b"b" * 1000 + b"c" * 1000
    got = remote(tmp_path).get("k")
    assert (len(got), hashlib.sha256(got).hexdigest()) == (
        len(expected),
        hashlib.sha256(expected).hexdigest(),
    )


def test_a_forked_child_cannot_use_its_parents_handle(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """
        handle = CS.open("k", "wb")
        handle.write(b"parent")
        pid = os.fork()
        if pid == 0:
            try:
                handle.write(b"child")
            except ValueError as exc:
                print(exc)
                os._exit(0)
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handle.close()
        """,
    )
    assert "belongs to the process that opened it" in result.stdout
    assert remote(tmp_path).get("k") == b"parent"


# -- interpreter exit: commit what is whole, discard what is likely cut short ---------------

WRITE_LOOP = """
handle = CS.open("k", "wb")
handle.write(b"partial ")
WRITING.set()
print("writing", flush=True)
for _ in range(2000):
    handle.write(b"more ")
    time.sleep(0.01)
"""

# How CPython ends on an unhandled KeyboardInterrupt: killed by SIGINT, or status 1 (-c).
INTERRUPTED = (1, -signal.SIGINT)

ENDINGS: dict[str, tuple[str, int | tuple[int, ...], str]] = {
    "a daemon thread still writing": (
        f"threading.Thread(target=exec, args=({WRITE_LOOP!r}, globals()), daemon=True).start()\n"
        "WRITING.wait()\n",
        0,
        "the thread writing it, 'Thread-1 (exec)', is still running",
    ),
    "an unhandled exception": (
        'handle = CS.open("k", "wb")\nhandle.write(b"partial")\nraise RuntimeError("midway")\n',
        1,
        "the program is ending with an unhandled RuntimeError",
    ),
    "a KeyboardInterrupt raised": (
        'handle = CS.open("k", "wb")\nhandle.write(b"partial")\nraise KeyboardInterrupt\n',
        INTERRUPTED,
        "the program is ending with an unhandled KeyboardInterrupt",
    ),
    "Ctrl-C in a write loop": (
        WRITE_LOOP,
        INTERRUPTED,
        "the program is ending with an unhandled KeyboardInterrupt",
    ),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_an_exit_that_cuts_a_write_short_leaves_the_remote_unchanged(
    tmp_path: Path, ending: str
) -> None:
    remote(tmp_path).put("k", GOOD)
    body, returncode, reason = ENDINGS[ending]
    result = run_script(
        tmp_path, body, returncode=returncode, send_sigint=ending.startswith("Ctrl-C")
    )
    assert remote(tmp_path).get("k") == GOOD
    assert f"discarding the writes to 'k' at interpreter exit: {reason}" in result.stderr


@pytest.mark.parametrize(
    "ending",
    [
        "pass",  # the end of the script
        "sys.exit(0)",
        "sys.exit(3)",  # an exit status is a decision, not a failure
        # A daemon thread that wrote the handle and finished, and a handled exception.
        "t = threading.Thread(target=lambda: handle.write(b'!'), daemon=True)\n"
        "t.start(); t.join()\n"
        "try:\n    raise RuntimeError('handled')\nexcept RuntimeError:\n    pass",
    ],
    ids=["end", "exit-0", "exit-3", "finished-daemon"],
)
def test_a_normal_exit_commits_a_handle_never_closed(tmp_path: Path, ending: str) -> None:
    remote(tmp_path).put("k", GOOD)
    body = 'handle = CS.open("k", "wb")\nhandle.write(b"whole")\n' + ending + "\n"
    result = run_script(tmp_path, body, returncode=3 if ending == "sys.exit(3)" else 0)
    assert remote(tmp_path).get("k") == (b"whole!" if "daemon" in ending else b"whole")
    assert "discarding" not in result.stderr
