"""Rate-limited logging of repeated errors, for the bridge and the hub alike (standard library only).

A bridge whose machine sends garbage every 100 ms, or a hub receiving a
hostile stream, must not fill the disk with the same line. :class:`RateLimitedLog`
logs an error of one *key* (a machine and the kind of error) at most once per
``interval_s``; the repeats in between are counted, and the count is appended
to the next line logged for that key ("… (41 more like this in the last 60 s
not logged)"). Keys are kept in a bounded LRU table, so a flood of made-up
keys costs memory for ``max_keys`` of them at most (an evicted key simply logs
again).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Hashable


class RateLimitedLog:
    """At most one log line per key and interval; counts what it held back.

    ``clock`` is injectable for tests (seconds, monotonic). Thread-safe.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self.suppressed_total = 0
        # key -> [monotonic time of the last line logged, repeats held back since]
        self._keys: collections.OrderedDict[Hashable, list[float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: Hashable) -> int | None:
        """None when a line for ``key`` must be held back now; else how many were held back before it."""
        now = self.clock()
        with self._lock:
            entry = self._keys.get(key)
            if entry is not None and now - entry[0] < self.interval_s:
                entry[1] += 1
                self.suppressed_total += 1
                return None
            held_back = int(entry[1]) if entry is not None else 0
            self._keys[key] = [now, 0]
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return held_back

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` logged within the interval; True when logged."""
        held_back = self.allow(key)
        if held_back is None:
            return False
        if held_back:
            msg += " (%d more like this in the last %.0f s not logged)"
            args = (*args, held_back, self.interval_s)
        self.logger.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)
