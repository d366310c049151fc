"""SQLite's WAL checkpoints, moved off the hub's hot path (SQLite only: PostgreSQL needs none of this).

With ``journal_mode=WAL`` and ``synchronous=NORMAL`` (``fablab.settings``) a commit does not wait
for the disk; a *checkpoint* does, when it copies the write-ahead log back into the database file
and syncs that file. SQLite runs one automatically inside the commit that takes the log past
``wal_autocheckpoint`` pages (1,000 by default). In the hub that commit is one of its status
passes, and the whole pass — and every board frame waiting on it — stalls for the copy and the
sync: 50–250 ms on the build machine, the board's slowest frames (``docs/benchmarks.md``).

So the hub turns automatic checkpoints off on every connection it opens (:func:`install`) and runs
them from a thread of its own, on a connection of its own (:class:`Checkpointer`): a ``PASSIVE``
checkpoint every second, which neither waits for a writer nor blocks one, and which releases the
interpreter lock while SQLite works. Durability is unchanged: a commit is in the log either way,
and the log is still checkpointed — only no longer by the hub's working thread. Nothing else
changes for the other processes (the web, the scheduler): they write rarely and keep SQLite's
automatic checkpoints, which also take over if the hub stops.
"""

from __future__ import annotations

import logging
import threading

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.signals import connection_created

log = logging.getLogger(__name__)

#: Seconds between two checkpoints: at the hub's pace, a few hundred pages each.
INTERVAL_S = 1.0


def is_sqlite(alias: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[alias].vendor == "sqlite"


def _no_automatic_checkpoints(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.connection.execute("PRAGMA wal_autocheckpoint=0")


def install(alias: str = DEFAULT_DB_ALIAS) -> None:
    """Turn SQLite's automatic checkpoints off on this process's connections, the open one and every new one.

    Only for a process that also runs a :class:`Checkpointer` (the hub): without one, the log would
    grow until another process checkpoints it.
    """
    connection_created.connect(_no_automatic_checkpoints, dispatch_uid="devices.sqlite_checkpoints")
    connection = connections[alias]
    if connection.connection is not None:
        connection.connection.execute("PRAGMA wal_autocheckpoint=0")


def uninstall() -> None:
    connection_created.disconnect(dispatch_uid="devices.sqlite_checkpoints")


class Checkpointer:
    """Checkpoints the WAL every ``interval_s`` from its own thread and connection (``start``/``stop``).

    ``last`` is SQLite's answer to the last checkpoint: (busy, frames in the log, frames
    checkpointed). A failure (the database locked for a moment, a disk error) is logged once
    until a checkpoint succeeds again; the next second tries again.
    """

    def __init__(self, *, alias: str = DEFAULT_DB_ALIAS, interval_s: float = INTERVAL_S) -> None:
        self.alias = alias
        self.interval_s = interval_s
        self.last: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoints", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.checkpoint()
            self.checkpoint()  # what the hub wrote last, before it exits
        finally:
            connections[self.alias].close()

    def checkpoint(self) -> None:
        try:
            with connections[self.alias].cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                busy, frames, done = cursor.fetchone()
        except Exception as exc:  # the next pass tries again; the web's own checkpoints still run
            if not self._failing:
                self._failing = True
                log.warning(
                    "WAL checkpoint failed (%s: %s); trying again every %.0f s",
                    type(exc).__name__,
                    exc,
                    self.interval_s,
                )
            connections[self.alias].close()
            return
        self.last = (busy, frames, done)
        if self._failing:
            self._failing = False
            log.info("WAL checkpoints work again")


def start_for_hub(alias: str = DEFAULT_DB_ALIAS) -> Checkpointer | None:
    """On SQLite: automatic checkpoints off in this process, a :class:`Checkpointer` started. Else None."""
    if not is_sqlite(alias):
        return None
    install(alias)
    checkpointer = Checkpointer(alias=alias)
    checkpointer.start()
    return checkpointer
