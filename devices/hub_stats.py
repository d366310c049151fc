"""What the hub counts and how it logs what it refuses, without flooding the log.

Contract: :class:`HubStats` holds the counters (``hub_stats``, logged and written to
InfluxDB's ``hub`` measurement every ``stats_interval``); the refusal reasons below
are the keys of its ``malformed_by_reason``, and :func:`reason_of` names the reason of a
:class:`~firmware_bridge.protocol.ProtocolError`. :class:`LimitedLog` logs a warning at
most once per (kind, machine) and interval, and at most ``per_s`` lines a second in
all, counting what it held back.

Called by the hub (:mod:`devices.hub`) and its writer (:mod:`devices.hub_writer`).
Standard library and the MQTT contract only.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from firmware_bridge import protocol

# Reasons a message is refused (the keys of HubStats.malformed).
BAD_TOPIC = "bad_topic"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
INVALID = "invalid"
UNKNOWN_MACHINE = "unknown_machine"
UNKNOWN_BRIDGE = "unknown_bridge"
UNEXPECTED = "unexpected_topic"
FAILED = "processing_failed"


class HubStats:
    """Counters, readable from any thread as :meth:`snapshot` (the ``hub_stats`` dict).

    Each counter is incremented by one thread only (the processing thread or
    the writer), so no lock is needed; copying a dict is atomic under the GIL.
    """

    def __init__(self) -> None:
        self.counters: collections.Counter[str] = collections.Counter()
        self.writer: collections.Counter[str] = collections.Counter()
        self.malformed: collections.Counter[str] = collections.Counter()

    def add(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def add_writer(self, name: str, n: int = 1) -> None:
        self.writer[name] += n

    def refuse(self, reason: str) -> None:
        self.malformed[reason] += 1
        self.counters["malformed"] += 1

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.counters.copy())
        out.update(self.writer.copy())
        out["malformed_by_reason"] = dict(self.malformed.copy())
        return out


def reason_of(exc: protocol.ProtocolError) -> str:
    """The refusal reason of a decoder's error (its message says which check failed)."""
    text = str(exc)
    if text.startswith("topic"):
        return BAD_TOPIC
    if text.startswith("payload: ") and "bytes, more than" in text:
        return TOO_LARGE
    if text.startswith(("payload: not", "payload: must be", "payload: nested")):
        return BAD_JSON
    return INVALID


class LimitedLog:
    """Warnings at most once per key and ``repeat_interval_s``, and at most ``per_s`` in all.

    A hostile sender makes up as many machines (keys) as it likes, hence the overall
    budget (a token bucket) on top of the per-key interval; keys live in a bounded LRU
    table (an evicted key simply logs again). :attr:`suppressed` counts the lines held
    back; :meth:`take_suppressed` returns and resets it. Thread-safe (the hub's main
    thread and its writer both log). ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        per_s: float,
        repeat_interval_s: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.per_s = per_s
        self.repeat_interval_s = repeat_interval_s
        self.max_keys = max_keys
        self.clock = clock
        self.suppressed = 0
        self._last: collections.OrderedDict[Hashable, float] = collections.OrderedDict()
        self._tokens = per_s
        self._refill = clock()
        self._lock = threading.Lock()

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless ``key`` logged within the interval or the budget is spent."""
        if not self._allow(key):
            return False
        self.logger.warning(msg, *args)
        return True

    def exception(self, key: Hashable, msg: str, *args: object) -> bool:
        """Like :meth:`warning`, at ERROR with the traceback of the exception being handled: a
        database that is down fails every message, and must not flood the log."""
        if not self._allow(("exception", key)):
            return False
        self.logger.exception(msg, *args)
        return True

    def _allow(self, key: Hashable) -> bool:
        with self._lock:
            now = self.clock()
            last = self._last.get(key)
            if last is not None and now - last < self.repeat_interval_s:
                self.suppressed += 1
                return False
            self._last[key] = now
            self._last.move_to_end(key)
            while len(self._last) > self.max_keys:
                self._last.popitem(last=False)
            self._tokens = min(self.per_s, self._tokens + (now - self._refill) * self.per_s)
            self._refill = now
            if self._tokens < 1:
                self.suppressed += 1
                return False
            self._tokens -= 1
        return True

    def take_suppressed(self) -> int:
        """The lines held back since the last call."""
        with self._lock:
            count, self.suppressed = self.suppressed, 0
        return count
