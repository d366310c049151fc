"""A disk spool for line protocol, used while InfluxDB is down.

The hub acknowledges an MQTT message only once its points are durable: in
InfluxDB, or here. A batch the server cannot take is appended to this SQLite
file (one row per batch, committed with ``synchronous=FULL`` before the MQTT
acks go out) and written to InfluxDB later, oldest first, by :meth:`drain`.
Points carry their own timestamps, so draining late (or twice, after a crash
between the write and the delete) stores each point exactly once.

Batches that InfluxDB *refuses* (HTTP 400) are moved to the ``rejected`` table
with the server's answer instead of being dropped: nothing disappears silently.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from devices.influx import InfluxRejected

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
                                    n INTEGER NOT NULL, lines TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (id INTEGER PRIMARY KEY AUTOINCREMENT, created REAL NOT NULL,
                                     n INTEGER NOT NULL, error TEXT NOT NULL, lines TEXT NOT NULL);
"""


class Spool:
    """Append-only batches of lines; safe to share between threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, lines: Sequence[str]) -> None:
        """Store one batch durably (returns after the commit reached the disk)."""
        if not lines:
            return
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (created, n, lines) VALUES (?, ?, ?)",
                (time.time(), len(lines), "\n".join(lines)),
            )

    def pending(self) -> int:
        """Lines waiting to be written."""
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(n), 0) FROM batches").fetchone()[0])

    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COALESCE(SUM(n), 0) FROM rejected").fetchone()[0])

    def drain(self, write: Callable[[list[str]], None], *, max_batches: int | None = None) -> int:
        """Write spooled batches oldest first with ``write``; return the number of lines written.

        Stops at the first batch ``write`` cannot take (its exception propagates,
        except :class:`InfluxRejected`, which moves the batch to ``rejected``).
        """
        done = 0
        count = 0
        while max_batches is None or count < max_batches:
            with self._lock:
                row = self._db.execute("SELECT id, n, lines FROM batches ORDER BY id LIMIT 1").fetchone()
            if row is None:
                break
            batch_id, n, text = row
            lines = text.split("\n")
            try:
                write(lines)
            except InfluxRejected as exc:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.execute(
                        "INSERT INTO rejected (created, n, error, lines) VALUES (?, ?, ?, ?)",
                        (time.time(), n, str(exc)[:2000], text),
                    )
                    self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                    self._db.execute("COMMIT")
            else:
                with self._lock:
                    self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
                done += n
            count += 1
        return done

    def reject(self, lines: Sequence[str], error: str) -> None:
        """Keep a batch the server refused, with its answer (for an operator to inspect)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO rejected (created, n, error, lines) VALUES (?, ?, ?, ?)",
                (time.time(), len(lines), error[:2000], "\n".join(lines)),
            )
