"""Repeated errors are logged once per interval and key, with the count of the repeats held back."""

from __future__ import annotations

import logging

import pytest

from firmware_bridge.ratelimit import RateLimitedLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(caplog: pytest.LogCaptureFixture) -> tuple[RateLimitedLog, Clock]:
    caplog.set_level(logging.WARNING, logger="test.ratelimit")
    clock = Clock()
    return RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=60, clock=clock), clock


def test_a_repeated_error_is_logged_once_per_interval_with_the_count_of_repeats(limited, caplog):
    log, clock = limited
    for _ in range(50):
        log.warning(("lab/m1", "invalid"), "bad message: %s", "x")
    assert [r.getMessage() for r in caplog.records] == ["bad message: x"]
    clock.now += 61
    assert log.warning(("lab/m1", "invalid"), "bad message: %s", "y")
    assert caplog.records[-1].getMessage() == "bad message: y (49 more like this in the last 60 s not logged)"
    assert log.suppressed_total == 49


def test_each_machine_and_kind_has_its_own_allowance(limited, caplog):
    log, _clock = limited
    assert log.warning(("lab/m1", "invalid"), "a")
    assert log.warning(("lab/m2", "invalid"), "b")
    assert log.warning(("lab/m1", "bad_json"), "c")
    assert not log.warning(("lab/m1", "invalid"), "d")
    assert [r.getMessage() for r in caplog.records] == ["a", "b", "c"]


def test_the_table_of_keys_is_bounded(caplog):
    clock = Clock()
    log = RateLimitedLog(logging.getLogger("test.ratelimit"), interval_s=60, max_keys=3, clock=clock)
    for i in range(1000):
        log.allow(("made-up", i))
    assert len(log._keys) == 3
    assert log.allow(("made-up", 0)) == 0  # evicted long ago: logs again, nothing wrongly counted
