"""The engine over the real stores: tempfile, a redis-server process and moto's S3 server.

Remote calls are counted (a counting memory remote, or the S3 server's request log); memory
is measured in subprocesses with ru_maxrss.  No timings are asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import pytest

from cached_stores_factory import (
    CachedStore,
    CachedStoreFactory,
    EntryReader,
    EntryStat,
    MemoryStore,
)
from cached_stores_factory.caches.FIFO_cache import FIFOCache
from cached_stores_factory.caches.LRU_cache import LRUCache
from cached_stores_factory.caches.TTL_cache import TTLCache
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory.testing.servers import RedisServer, S3Server
from cached_stores_factory.testing.stores import ChunkedStream

WAIT = 10.0
MiB = 1024 * 1024


class CountingRemote(MemoryStore):
    """A memory remote that counts fetches and can hold them on an Event."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.gate: threading.Event | None = None

    def open_read(self, key: str) -> EntryReader:
        self.calls["open_read"] += 1
        gate = self.gate
        if gate is not None:
            assert gate.wait(WAIT)
        return super().open_read(key)

    def put_stream(self, key: str, stream: IO[bytes], *, etag: str | None = None) -> EntryStat:
        self.calls["put_stream"] += 1
        return super().put_stream(key, stream, etag=etag)


@pytest.fixture
def remote() -> CountingRemote:
    store = CountingRemote()
    for i in range(4):
        store.put(f"obj/{i}.bin", f"object {i}".encode() * 100)
    return store


def tempfile_store(tmp_path: Path) -> TempfileStore:
    return TempfileStore("engine-it", root=tmp_path / "cache")


def single_flight(cs: CachedStore, remote: CountingRemote, key: str, threads: int = 32) -> list:
    """`threads` readers of one cold key, all released together once every one has missed."""
    remote.gate = threading.Event()

    def opener() -> None:
        deadline = time.monotonic() + WAIT
        while cs.stats()["misses"] < threads and time.monotonic() < deadline:
            time.sleep(0.001)
        remote.gate.set()  # type: ignore[union-attr]

    threading.Thread(target=opener, daemon=True).start()
    barrier = threading.Barrier(threads)

    def read() -> bytes:
        barrier.wait(WAIT)
        with cs.open(key, "rb") as fh:
            return fh.read()

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda _: read(), range(threads)))
    remote.gate = None
    return results


# -- tempfile -----------------------------------------------------------------------------


def test_tempfile_hits_cost_no_remote_call(tmp_path: Path, remote: CountingRemote) -> None:
    cs = CachedStoreFactory(tempfile_store(tmp_path), remote).build()
    assert cs.open("obj/0.bin", "rb").read() == b"object 0" * 100
    remote.calls.clear()
    for _ in range(10):
        with cs.open("obj/0.bin", "rb") as fh:
            assert fh.read() == b"object 0" * 100
    assert remote.calls.total() == 0
    assert cs.stats()["hits"] == 10


def test_rb_returns_the_tempfile_stream_itself(tmp_path: Path, remote: CountingRemote) -> None:
    class Spy(TempfileStore):
        def open_read(self, key: str) -> EntryReader:
            entry = super().open_read(key)
            self.last = entry.stream
            return entry

    remote.put("big.bin", b"z" * (1024 * 1024))  # past the store's read-whole size
    local = Spy("spy", root=tmp_path / "spy")
    cs = CachedStoreFactory(local, remote).build()
    for key in ("obj/0.bin", "big.bin"):
        cs.get(key)
        handle = cs.open(key, "rb")
        assert handle is local.last
        handle.close()


def test_tempfile_single_flight(tmp_path: Path, remote: CountingRemote) -> None:
    cs = CachedStoreFactory(tempfile_store(tmp_path), remote).build()
    remote.calls.clear()
    assert single_flight(cs, remote, "obj/1.bin") == [b"object 1" * 100] * 32
    assert remote.calls["open_read"] == 1


def test_ttl_expiry_refetches(tmp_path: Path, remote: CountingRemote) -> None:
    skew = [0.0]
    policy = TTLCache(interval=30.0, clock=lambda: time.time() + skew[0])
    cs = CachedStoreFactory(tempfile_store(tmp_path), remote, policy).build()
    cs.get("obj/0.bin")
    cs.get("obj/0.bin")
    assert remote.calls["open_read"] == 1
    skew[0] = 31.0
    assert cs.get("obj/0.bin") == b"object 0" * 100
    assert remote.calls["open_read"] == 2
    assert cs.stats()["hits"] == 1


@pytest.mark.parametrize("policy", [LRUCache, FIFOCache])
def test_bounded_policies_evict_local_copies_only(
    tmp_path: Path, remote: CountingRemote, policy: Callable[..., Any]
) -> None:
    local = tempfile_store(tmp_path)
    cs = CachedStoreFactory(local, remote, policy(depth=2)).build()
    cs.get("obj/0.bin")
    cs.get("obj/1.bin")
    cs.get("obj/0.bin")  # recent for LRU, still the oldest for FIFO
    cs.get("obj/2.bin")
    expected = {"obj/0.bin", "obj/2.bin"} if policy is LRUCache else {"obj/1.bin", "obj/2.bin"}
    assert set(local.keys()) == expected
    assert cs.stats()["evictions"] == 1
    assert len(list(remote.keys("obj/"))) == 4


def test_write_through_over_tempfile(tmp_path: Path, remote: CountingRemote) -> None:
    local = tempfile_store(tmp_path)
    cs = CachedStoreFactory(local, remote).build()
    with cs.open("new/file.txt", "w") as fh:
        fh.write("written through\n")
    assert remote.get("new/file.txt") == b"written through\n"
    assert local.get("new/file.txt") == b"written through\n"
    with cs.open("new/file.txt", "a") as fh:
        fh.write("and appended\n")
    remote.calls.clear()
    with cs.open("new/file.txt") as fh:  # r+b: a hit
        assert fh.read() == b"written through\nand appended\n"
    assert remote.calls["open_read"] == 0


def test_memory_over_tempfile_over_remote(tmp_path: Path, remote: CountingRemote) -> None:
    middle = tempfile_store(tmp_path)
    inner = CachedStoreFactory(middle, remote).build()
    top = MemoryStore()
    outer = CachedStoreFactory(top, inner, LRUCache(depth=100)).build()
    assert outer.open("obj/3.bin", "rb").read() == b"object 3" * 100
    assert top.get("obj/3.bin") == middle.get("obj/3.bin") == b"object 3" * 100
    outer.invalidate("obj/3.bin")  # the memory tier forgets; the tempfile tier still holds it
    remote.calls.clear()
    assert outer.get("obj/3.bin") == b"object 3" * 100
    assert remote.calls["open_read"] == 0
    assert inner.stats()["hits"] == 1
    outer["tiers/new"] = b"down every tier"
    assert remote.get("tiers/new") == middle.get("tiers/new") == top.get("tiers/new")


# -- redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_local(redis_server: RedisServer) -> Any:
    from cached_stores_factory.stores.redis_store import RedisStore

    store = RedisStore(redis_server.host, redis_server.port, prefix=f"eng-{uuid.uuid4().hex}:")
    yield store
    store.clear()
    store.close()


@pytest.mark.redis
def test_redis_local_reads_through_once_and_writes_through(
    redis_local: Any, remote: CountingRemote
) -> None:
    cs = CachedStoreFactory(redis_local, remote).build()
    assert single_flight(cs, remote, "obj/2.bin") == [b"object 2" * 100] * 32
    assert remote.calls["open_read"] == 1
    assert redis_local.get("obj/2.bin") == b"object 2" * 100
    cs["w/x"] = b"via redis"
    assert remote.get("w/x") == redis_local.get("w/x") == b"via redis"
    cs.invalidate("w/x")
    assert "w/x" not in redis_local and cs["w/x"] == b"via redis"


# -- S3 (moto's HTTP server) --------------------------------------------------------------


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket("engine")


@pytest.mark.s3
def test_s3_remote_hits_send_no_request(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    s3_server.client().put_object(Bucket=bucket, Key="data/a.csv", Body=b"a,b\n1,2\n")
    cs = CachedStoreFactory(tempfile_store(tmp_path), s3_server.store(bucket)).build()
    before = s3_server.count()
    with cs.open("data/a.csv", "r") as fh:
        assert fh.read() == "a,b\n1,2\n"
    assert s3_server.count("GET", f"/{bucket}/data/a.csv") == 1
    after_miss = s3_server.count()
    assert after_miss > before
    for _ in range(5):
        assert cs.open("data/a.csv", "rb").read() == b"a,b\n1,2\n"
    assert s3_server.count() == after_miss


@pytest.mark.s3
def test_s3_single_flight_and_write_through(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="hot.bin", Body=b"h" * 50_000)
    cs = CachedStoreFactory(tempfile_store(tmp_path), s3_server.store(bucket)).build()

    def read() -> bytes:
        with cs.open("hot.bin", "rb") as fh:
            return fh.read()

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(lambda _: read(), range(32)))
    assert results == [b"h" * 50_000] * 32
    assert s3_server.count("GET", f"/{bucket}/hot.bin") == 1

    with cs.open("out/report.txt", "w") as fh:
        fh.write("committed on close")
    body = client.get_object(Bucket=bucket, Key="out/report.txt")["Body"].read()
    assert body == b"committed on close"


# -- memory bounds and interpreter exit, in subprocesses ----------------------------------

_PEAK = """
import hashlib, json, sys
from cached_stores_factory import CachedStoreFactory
from cached_stores_factory.stores.tempfile_store import TempfileStore
from cached_stores_factory.testing.stores import ChunkedStream

def status(field):
    with open("/proc/self/status") as lines:
        for line in lines:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024

def peak():
    # The peak resident set of this process image.  ru_maxrss would not do: on Linux a
    # child started by fork+exec inherits the parent's maximum, and the parent (pytest, with
    # moto's objects in memory) is far larger than anything measured here.
    return status("VmHWM")

def resident():
    return status("VmRSS")

def drain(stream):
    digest, size = hashlib.sha256(), 0
    while piece := stream.read(1 << 20):
        digest.update(piece)
        size += len(piece)
    return size, digest.hexdigest()
"""

_STREAM_THROUGH = """
cs = CachedStoreFactory(TempfileStore("peak", root=sys.argv[1]), remote).build()
cs.put("warm", b"x" * 100_000)
cs.get("warm")
baseline = resident()  # what is resident now, not the peak so far: the stricter bound
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # restart the peak (VmHWM) from here
with cs.open("big", "rb") as fh:
    fetched = drain(fh)
with cs.open("big", "rb") as fh:
    again = drain(fh)
with cs.open("big") as fh:  # the default r+b: a lazy copy, read to the end
    lazily = drain(fh)
source = ChunkedStream(SIZE if WRITE else 0, seed=7)
with cs.open("up", "wb") as fh:
    while piece := source.read(1 << 20):
        fh.write(piece)
print(json.dumps({
    "growth": peak() - baseline,
    "reads": [fetched, again, lazily],
    "written": source.digest,
    "stats": cs.stats(),
}))
"""

_DOUBLE_REMOTE = """
import io, time
from cached_stores_factory import EntryReader, EntryStat, Store

class StreamingRemote(Store):
    # Makes its one large object on demand; drains and hashes what is written to it.
    def __init__(self):
        self.written = {}
    def open_read(self, key):
        return EntryReader(io.BufferedReader(ChunkedStream(SIZE)), EntryStat(SIZE, time.time()))
    def put_stream(self, key, stream, *, etag=None):
        size, digest = drain(stream)
        self.written[key] = digest
        return EntryStat(size, time.time())
    def get(self, key): raise NotImplementedError
    def put(self, key, data): raise NotImplementedError
    def delete(self, key): return self.written.pop(key, None) is not None
    def keys(self, prefix=""): return iter(self.written)

remote = StreamingRemote()
"""


def run_peak(script: str, tmp_path: Path, size: int, *, write: bool) -> dict:
    """Run `script` in a fresh interpreter; it reads (and writes) SIZE bytes through a cache."""
    code = _PEAK + f"SIZE = {size}\nWRITE = {write}\n" + textwrap.dedent(script)
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "cache")],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"peak RSS growth: {result['growth'] / MiB:.1f} MiB")
    return result


@pytest.mark.slow
def test_large_objects_stream_with_bounded_memory(tmp_path: Path) -> None:
    size = 300 * MiB
    result = run_peak(_DOUBLE_REMOTE + _STREAM_THROUGH, tmp_path, size, write=True)
    expected = ChunkedStream(size)
    while expected.read(MiB):
        pass
    assert result["reads"] == [[size, expected.digest]] * 3
    assert result["stats"]["remote_reads"] == 1 and result["stats"]["hits"] == 3
    assert result["growth"] < 64 * MiB, f"peak RSS grew by {result['growth'] / MiB:.0f} MiB"


@pytest.mark.slow
@pytest.mark.s3
def test_large_s3_objects_stream_with_bounded_memory(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    s3_server.store(bucket)  # skips here, not in the subprocess, if the plugin is missing
    size = 256 * MiB
    source = ChunkedStream(size, seed=3)
    s3_server.client().upload_fileobj(source, bucket, "big")
    script = f"""
    from cached_stores_factory.stores.S3_store import S3Store
    remote = S3Store(bucketname={bucket!r}, s3_region="eu-central-1",
                     endpoint_url={s3_server.endpoint_url!r},
                     aws_access_key_id="testing", aws_secret_access_key="testing")
    """
    # Reading only: writes stream the same way and are measured above; moto is slow.
    result = run_peak(textwrap.dedent(script) + _STREAM_THROUGH, tmp_path, size, write=False)
    assert result["reads"] == [[size, source.digest]] * 3
    assert result["stats"]["remote_reads"] == 1
    assert s3_server.count("GET", f"/{bucket}/big") == 1
    assert result["growth"] < 64 * MiB, f"peak RSS grew by {result['growth'] / MiB:.0f} MiB"


@pytest.mark.s3
def test_unclosed_handles_reach_s3_at_interpreter_exit(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    """The seed's shape: open, write, never close, exit.  S3 holds the bytes afterwards."""
    s3_server.store(bucket)
    script = f"""
    from cached_stores_factory.factories.cached_store_factory import CachedStoreFactory
    from cached_stores_factory.stores.S3_store import S3Store
    from cached_stores_factory.stores.tempfile_store import TempfileStore
    from cached_stores_factory.caches.TTL_cache import TTLCache

    s3_store = S3Store(bucketname={bucket!r}, s3_region="eu-central-1",
                       endpoint_url={s3_server.endpoint_url!r},
                       aws_access_key_id="testing", aws_secret_access_key="testing",
                       multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    CS = CachedStoreFactory(TempfileStore("exit", root={str(tmp_path)!r}), s3_store,
                            TTLCache(interval=60.0)).build()
    CSFD = CS.open("path/my.file")       # the default r+b, on a missing key: a new entry
    """
    missing = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True
    )
    assert "FileNotFoundError" in missing.stderr  # r+b needs the key, as open() does
    s3_server.client().put_object(Bucket=bucket, Key="path/my.file", Body=b"old;")
    script += """
    res = CSFD.read()
    CSFD.write(res.upper() + b"x" * (12 * 1024 * 1024))   # multipart: threads at exit
    big = CS.open("path/other.file", "wb")
    big.write(b"never closed")
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=True, timeout=60)
    client = s3_server.client()
    body = client.get_object(Bucket=bucket, Key="path/my.file")["Body"].read()
    assert body == b"old;OLD;" + b"x" * (12 * 1024 * 1024)
    assert client.get_object(Bucket=bucket, Key="path/other.file")["Body"].read() == (
        b"never closed"
    )


# -- make demo ----------------------------------------------------------------------------


@pytest.mark.s3
def test_the_demo_runs_and_shows_every_behaviour() -> None:
    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.py"
    done = subprocess.run(
        [sys.executable, str(demo)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    rows = [line.split() for line in out.splitlines() if line[:6].strip().isdigit()]
    first = [(row[1], row[2]) for row in rows[:4]]
    assert first == [
        ("reports/2024.csv", "remote"),
        ("reports/2024.csv", "cache"),
        ("images/logo.bin", "remote"),
        ("images/logo.bin", "cache"),
    ]
    for line in (
        "Example 1: TempfileStore + S3Store + TTLCache(interval=1.0)",
        "TTL expiry",
        "     5  reports/2024.csv       304",  # the expired copy is revalidated, no body
        "16 readers got identical bytes from 1 remote fetch",
        "S3 now holds b'the original file\\nmy_data, appended\\n'",
        "local copies now: ['images/logo.bin', 'reports/2024.csv']",
        "evictions=2",
        "Demo finished",
    ):
        assert line in out, line
    assert "Example 2: RedisStore" in out or "nothing answers on localhost:6379" in out
    assert "Traceback" not in done.stderr
