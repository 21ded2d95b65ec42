"""A persistent request cache for paid endpoints: keyed by (model, prompt, parameters), so that a
rerun or a resumed stage never pays for the same request twice. SQLite: one file, safe across
threads of one process and across processes on one machine."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Optional


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.hits = self.misses = 0
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)

    @staticmethod
    def key(model: str, prompt: Any, params: dict) -> str:
        blob = json.dumps({"model": model, "prompt": prompt, "params": params}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> Optional[dict]:
        row = self._db().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, value: dict) -> None:
        """Only successful answers are stored: an error must be retried next time, not replayed."""
        self._db().execute("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", (key, json.dumps(value)))


def thread_connection(local, path) -> sqlite3.Connection:
    """This thread's connection to the SQLite file at `path` (WAL: readers never block the writer)."""
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        local.conn = conn
    return conn
