"""The disk spool: every telemetry and event message, on disk before it is published.

One SQLite file holds:

* ``meta``: the spool id ``sid`` (a UUID made when the file is created and kept
  for its life) and the creation time;
* ``machines``: per machine, the last ``seq`` handed out and how many messages
  were dropped because the spool was full;
* ``outbox``: the messages not yet acknowledged by the broker, in the order
  they were made (``id`` is AUTOINCREMENT, so ids are never reused);
* ``interlock``: each machine's last commanded enabled state;
* ``commands``: the results of recent commands, by id, for idempotency;
* ``adapter_state``: small JSON values an adapter keeps across restarts (a
  power plug's energy counter base), per machine and name.

Durability: WAL with ``synchronous=FULL``. Under WAL, NORMAL survives a
crashed process (kill -9) but a power cut may roll back the last commits, and
a rolled-back ``seq`` counter would hand out a ``seq`` the server has already
seen for this ``sid``: the server would then discard new data as a "replay".
A Raspberry Pi loses power far more often than a server, so every commit is
synced (one fsync per message; a few dozen per second at most on a lab bridge).
Deletions after PUBACK are batched, so replays cost one fsync per batch.

Bound: at most ``max_messages`` rows. Appending to a full spool drops the
OLDEST rows (recent data is worth more to a live floor board, and the oldest
is the most likely to be covered elsewhere) and counts them per machine; the
counts are persisted and reported in status and in the bridge's online message.

Thread safety: one connection guarded by a lock; every method may be called
from any thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS machines (
    key TEXT PRIMARY KEY,          -- "lab/machine"
    last_seq INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    machine TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS interlock (
    key TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT NOT NULL,
    machine TEXT NOT NULL,
    ok INTEGER NOT NULL,
    code TEXT,
    message TEXT,
    ts INTEGER NOT NULL,
    PRIMARY KEY (machine, id)
);
CREATE INDEX IF NOT EXISTS commands_ts ON commands (ts);
CREATE TABLE IF NOT EXISTS adapter_state (
    machine TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (machine, name)
);
"""


@dataclasses.dataclass(frozen=True)
class Row:
    """One spooled message."""

    id: int
    machine: str
    topic: str
    payload: bytes


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """A remembered command outcome: ``ok`` with ``code``/``message`` when it failed."""

    ok: bool
    code: str | None = None
    message: str | None = None


class SpoolError(Exception):
    """The spool file cannot be opened or is not a spool."""


class Spool:
    """The bridge's SQLite spool; see the module docstring for the guarantees."""

    def __init__(self, path: str | Path, *, max_messages: int = 200_000) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT value FROM meta WHERE key='sid'").fetchone()
            if row is None:
                self.sid = str(uuid.uuid4())
                self._db.execute("INSERT INTO meta (key, value) VALUES ('sid', ?)", (self.sid,))
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('created_ms', ?)", (str(time.time_ns() // 10**6),)
                )
                log.info("spool %s created with sid %s", self.path, self.sid)
            else:
                self.sid = str(uuid.UUID(row[0]))
            self._db.execute("COMMIT")
            self._count = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except (sqlite3.Error, ValueError) as exc:
            raise SpoolError(f"cannot open spool {self.path}: {exc}") from exc
        if self._count:
            log.info("spool %s holds %d unacknowledged messages to replay", self.path, self._count)

    # ------------------------------------------------------------------ outbox

    def append(self, machine: str, topic: str, build: Callable[[str, int], bytes]) -> Row:
        """Give ``machine`` its next ``seq``, build the payload and store it, in one transaction.

        ``build(sid, seq)`` returns the encoded payload; if it raises, nothing is
        stored and the ``seq`` is not used. When the spool is full the oldest
        rows are dropped first and counted against their machines.
        """
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT OR IGNORE INTO machines (key) VALUES (?)", (machine,))
                seq = db.execute("SELECT last_seq FROM machines WHERE key=?", (machine,)).fetchone()[0] + 1
                payload = build(self.sid, seq)
                db.execute("UPDATE machines SET last_seq=? WHERE key=?", (seq, machine))
                if self._count >= self.max_messages:
                    self._drop_oldest_locked(self._count - self.max_messages + 1)
                cur = db.execute(
                    "INSERT INTO outbox (machine, topic, payload) VALUES (?, ?, ?)", (machine, topic, payload)
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                raise
            self._count += 1
            return Row(cur.lastrowid, machine, topic, payload)

    def append_many(self, items: Iterable[tuple[str, str, Callable[[str, int], bytes]]]) -> int:
        """Bulk :meth:`append` in one transaction (benchmarks and imports); returns how many were stored."""
        n = 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                seqs: dict[str, int] = {}
                for machine, topic, build in items:
                    if machine not in seqs:
                        db.execute("INSERT OR IGNORE INTO machines (key) VALUES (?)", (machine,))
                        seqs[machine] = db.execute(
                            "SELECT last_seq FROM machines WHERE key=?", (machine,)
                        ).fetchone()[0]
                    seqs[machine] += 1
                    payload = build(self.sid, seqs[machine])
                    if self._count >= self.max_messages:
                        self._drop_oldest_locked(self._count - self.max_messages + 1)
                    db.execute(
                        "INSERT INTO outbox (machine, topic, payload) VALUES (?, ?, ?)",
                        (machine, topic, payload),
                    )
                    self._count += 1
                    n += 1
                for machine, seq in seqs.items():
                    db.execute("UPDATE machines SET last_seq=? WHERE key=?", (seq, machine))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._count = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                raise
        return n

    def _drop_oldest_locked(self, n: int) -> None:
        rows = self._db.execute("SELECT id, machine FROM outbox ORDER BY id LIMIT ?", (n,)).fetchall()
        if not rows:
            return
        per_machine: dict[str, int] = {}
        for _, machine in rows:
            per_machine[machine] = per_machine.get(machine, 0) + 1
        self._db.execute("DELETE FROM outbox WHERE id <= ?", (rows[-1][0],))
        for machine, count in per_machine.items():
            self._db.execute("INSERT OR IGNORE INTO machines (key) VALUES (?)", (machine,))
            self._db.execute("UPDATE machines SET dropped = dropped + ? WHERE key=?", (count, machine))
        self._count -= len(rows)
        log.warning("spool full (%d messages): dropped the %d oldest", self.max_messages, len(rows))

    def fetch_after(self, cursor: int, limit: int) -> list[Row]:
        """Up to ``limit`` rows with ``id > cursor``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, machine, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (cursor, limit),
            ).fetchall()
        return [Row(r[0], r[1], r[2], bytes(r[3])) for r in rows]

    def fetch_ids(self, ids: Iterable[int]) -> list[Row]:
        """The rows among ``ids`` that are still spooled, oldest first."""
        ids = list(ids)
        out: list[Row] = []
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                out += [
                    Row(r[0], r[1], r[2], bytes(r[3]))
                    for r in self._db.execute(
                        f"SELECT id, machine, topic, payload FROM outbox WHERE id IN ({marks})",  # noqa: S608
                        chunk,
                    )
                ]
        return sorted(out, key=lambda r: r.id)

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows (one transaction); returns how many were still there."""
        ids = [(i,) for i in ids]
        if not ids:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany("DELETE FROM outbox WHERE id=?", ids)
                removed = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= removed
            return removed

    def pending(self) -> int:
        """Messages waiting for the broker's acknowledgement."""
        with self._lock:
            return self._count

    def dropped(self, machine: str | None = None) -> int:
        """Messages dropped because the spool was full: of ``machine`` ("lab/machine"), or in total."""
        with self._lock:
            if machine is None:
                row = self._db.execute("SELECT COALESCE(SUM(dropped), 0) FROM machines").fetchone()
            else:
                row = self._db.execute("SELECT dropped FROM machines WHERE key=?", (machine,)).fetchone()
        return int(row[0]) if row else 0

    def last_seq(self, machine: str) -> int:
        """The last ``seq`` handed to ``machine`` (0 if none)."""
        with self._lock:
            row = self._db.execute("SELECT last_seq FROM machines WHERE key=?", (machine,)).fetchone()
        return int(row[0]) if row else 0

    # --------------------------------------------------------------- interlock

    def get_enabled(self, machine: str) -> bool | None:
        """The last commanded interlock state of ``machine``, or None if never commanded."""
        with self._lock:
            row = self._db.execute("SELECT enabled FROM interlock WHERE key=?", (machine,)).fetchone()
        return None if row is None else bool(row[0])

    def set_enabled(self, machine: str, enabled: bool) -> None:
        """Persist the last commanded interlock state of ``machine``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO interlock (key, enabled, ts) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET enabled=excluded.enabled, ts=excluded.ts",
                (machine, int(enabled), time.time_ns() // 10**6),
            )

    # ----------------------------------------------------------- adapter state

    def get_state(self, machine: str, name: str) -> str | None:
        """The value ``machine``'s adapter last saved under ``name`` (None if never)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM adapter_state WHERE machine=? AND name=?", (machine, name)
            ).fetchone()
        return None if row is None else str(row[0])

    def put_state(self, machine: str, name: str, value: str) -> None:
        """Save (replace) ``machine``'s adapter value ``name``; on disk when this returns."""
        with self._lock:
            self._db.execute(
                "INSERT INTO adapter_state (machine, name, value) VALUES (?, ?, ?) "
                "ON CONFLICT(machine, name) DO UPDATE SET value=excluded.value",
                (machine, name, value),
            )

    # ---------------------------------------------------------------- commands

    def get_command(self, machine: str, command_id: str) -> CommandResult | None:
        """The remembered result of command ``command_id`` for ``machine``, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT ok, code, message FROM commands WHERE machine=? AND id=?", (machine, command_id)
            ).fetchone()
        return None if row is None else CommandResult(bool(row[0]), row[1], row[2])

    def put_command(self, machine: str, command_id: str, result: CommandResult) -> None:
        """Remember the result of a command (first result wins)."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO commands (id, machine, ok, code, message, ts) VALUES (?, ?, ?, ?, ?, ?)",
                (command_id, machine, int(result.ok), result.code, result.message, time.time_ns() // 10**6),
            )

    def prune_commands(self, older_than_s: float) -> int:
        """Forget command results older than ``older_than_s`` seconds; returns how many."""
        limit = time.time_ns() // 10**6 - int(older_than_s * 1000)
        with self._lock:
            cur = self._db.execute("DELETE FROM commands WHERE ts < ?", (limit,))
            return cur.rowcount

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock, contextlib.suppress(sqlite3.Error):  # closing twice is harmless
            self._db.close()
