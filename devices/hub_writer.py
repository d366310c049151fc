"""The hub's writer thread: each batch durable in InfluxDB or the disk spool, then acknowledged.

Contract: :meth:`Writer.put` hands over a :class:`Batch` (blocking while two wait:
back-pressure on the hub's main thread). The writer writes the batch's lines to
InfluxDB — or, while InfluxDB is down, to the spool (:mod:`devices.influx_spool`) —
and only *then* calls ``ack`` with the batch's messages, in the order they arrived:
at least once, never acknowledged before it is stored somewhere. A line InfluxDB
refuses is isolated from its batch and kept in the spool's ``rejected`` table; the
batch's other points are written. The spool drains when InfluxDB answers again.

Called by the hub (:mod:`devices.hub`), which owns the MQTT connection and so the
``ack`` callback. Imports :mod:`devices.influx` and :mod:`devices.influx_spool`.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable

from devices.hub_stats import HubStats, LimitedLog
from devices.influx import InfluxError, InfluxStore
from devices.influx_spool import Spool

log = logging.getLogger("devices.hub")

#: A message to acknowledge: (packet id, QoS, connection generation).
Ack = tuple[int, int, int]


@dataclasses.dataclass
class Batch:
    """Line protocol to write and the messages it acknowledges once written."""

    lines: list[str] = dataclasses.field(default_factory=list)
    acks: list[Ack] = dataclasses.field(default_factory=list)
    telemetry: int = 0
    started: float = 0.0


class Writer:
    """One writer thread per hub worker; :meth:`close` writes what is queued, then returns."""

    def __init__(
        self,
        *,
        store: InfluxStore,
        spool: Spool,
        stats: HubStats,
        logs: LimitedLog,
        ack: Callable[[list[Ack]], None],
    ) -> None:
        self.store = store
        self.spool = spool
        self.stats = stats
        self.logs = logs
        self.ack = ack
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=2)
        self._influx_up = True
        self._next_influx_try = 0.0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="hub-writer", daemon=True)
        self._thread.start()

    def put(self, batch: Batch) -> None:
        """Queue ``batch`` (blocks while two are waiting)."""
        self._queue.put(batch)

    def close(self, timeout: float = 120.0) -> None:
        """Write and acknowledge every queued batch, then stop the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=1.0)
            except queue.Empty:
                self._drain_spool()
                continue
            if batch is None:
                return
            t0 = time.perf_counter()
            self._persist(batch.lines)
            t1 = time.perf_counter()
            self.ack(batch.acks)
            self.stats.add_writer("write_ms", round((t1 - t0) * 1000))
            self.stats.add_writer("ack_ms", round((time.perf_counter() - t1) * 1000))
            self.stats.add_writer("acked", len(batch.acks))
            self.stats.add_writer("batches")
            self._drain_spool()

    def _persist(self, lines: list[str]) -> None:
        """Write to InfluxDB, else to the spool; return only when the lines are durable somewhere."""
        if not lines:
            return
        if self._influx_up or time.monotonic() >= self._next_influx_try:
            try:
                refused = self._write_isolating(lines)
            except InfluxError as exc:
                if self._influx_up:
                    log.warning("InfluxDB unavailable, spooling to %s: %s", self.spool.path, exc)
                self._influx_up = False
                self._next_influx_try = time.monotonic() + 1.0
                self.stats.add_writer("influx_write_errors")
            else:
                if not self._influx_up:
                    log.info("InfluxDB is back")
                self._influx_up = True
                self.stats.add_writer("points_written", len(lines) - refused)
                return
        while True:
            try:
                self.spool.append(lines)
                break
            except Exception:
                # The disk is full or broken: keep the messages unacknowledged until it works.
                log.exception("cannot spool %d lines; retrying", len(lines))
                time.sleep(1.0)
        self.stats.add_writer("points_spooled", len(lines))

    def _write_isolating(self, lines: list[str]) -> int:
        """Write ``lines``; keep the ones InfluxDB refuses in the spool's ``rejected`` table.

        One bad line never costs the batch's other points (other machines' among them):
        :meth:`InfluxStore.write_isolating` writes everything the server accepts. Returns
        the number of lines refused; raises :class:`InfluxError` when InfluxDB is unavailable.
        """
        refused = self.store.write_isolating(lines)
        count = 0
        for bad, error in refused:
            self.spool.reject(bad, error)
            count += len(bad)
            self.logs.warning(
                (None, "influx_refused"),
                "InfluxDB refused %d line(s), kept in the spool's rejected table: %s (first line: %.200s)",
                len(bad),
                error[:300],
                bad[0],
            )
        if count:
            self.stats.add_writer("points_rejected", count)
        return count

    def _spool_write(self, lines: list[str]) -> None:
        """The spool's writer: refused lines are set apart, the others written."""
        self._write_isolating(lines)

    def _drain_spool(self) -> None:
        if not self._influx_up and time.monotonic() < self._next_influx_try:
            return
        try:
            if self.spool.pending() == 0:
                return
            done = self.spool.drain(self._spool_write, max_batches=4)
        except InfluxError as exc:
            self._influx_up = False
            self._next_influx_try = time.monotonic() + 1.0
            log.debug("spool not drained yet: %s", exc)
            return
        if done:
            if not self._influx_up:
                log.info("InfluxDB is back; draining the spool")
            self._influx_up = True
            self.stats.add_writer("points_drained", done)
