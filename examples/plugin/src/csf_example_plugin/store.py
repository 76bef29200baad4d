"""SQLiteStore: every entry a row in one SQLite file."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cached_stores_factory import EntryStat, Store
from cached_stores_factory.errors import KeyNotFoundError, StoreError


class SQLiteStore(Store):
    """Entries in a SQLite database file; several processes may share it.

    Only the four required methods and `stat` are written here: streaming, `in`,
    `clear` and the rest come from the Store base class.  Keys arrive validated.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._local = threading.local()  # sqlite3 connections belong to one thread
        with self._db() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries"
                " (key TEXT PRIMARY KEY, data BLOB NOT NULL, modified REAL NOT NULL)"
            )

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=30)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self.path}: {exc}") from exc
            self._local.db = db
        return db

    def get(self, key: str) -> bytes:
        row = self._db().execute("SELECT data FROM entries WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise KeyNotFoundError(key, repr(self))
        return bytes(row[0])

    def put(self, key: str, data: bytes) -> None:
        with self._db() as db:  # a transaction: readers see the old row or the new one
            db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", (key, bytes(data), time.time())
            )

    def delete(self, key: str) -> bool:
        with self._db() as db:
            return db.execute("DELETE FROM entries WHERE key = ?", (key,)).rowcount > 0

    def keys(self, prefix: str = "") -> Iterator[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db().execute(
            "SELECT key FROM entries WHERE key LIKE ? ESCAPE '\\'", (escaped + "%",)
        )
        return (key for (key,) in rows.fetchall() if key.startswith(prefix))

    def stat(self, key: str) -> EntryStat:
        row = (
            self._db()
            .execute("SELECT length(data), modified FROM entries WHERE key = ?", (key,))
            .fetchone()
        )
        if row is None:
            raise KeyNotFoundError(key, repr(self))
        return EntryStat(size=row[0], modified=row[1])
