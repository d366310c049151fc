"""The hub's WAL checkpoints on SQLite: none inside its own commits, all from a thread of their own."""

from __future__ import annotations

import time

import pytest
from django.db import connection, transaction

from devices import sqlite_checkpoints
from fablab.labs.models import Lab

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sqlite_only():
    if connection.vendor != "sqlite":
        pytest.skip("WAL checkpoints are SQLite's; PostgreSQL checkpoints on its own")


def _autocheckpoint() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        return cursor.fetchone()[0]


def _write(pages: int) -> None:
    """Commit about ``pages`` pages of the database's log, one transaction each (as the hub's passes do)."""
    for i in range(pages // 4):
        with transaction.atomic():
            Lab.objects.create(slug=f"wal-{i}", name="x" * 4000, time_zone="Europe/Brussels")


def test_the_hubs_connections_leave_checkpoints_to_the_checkpointer(sqlite_only):
    assert _autocheckpoint() == 1000  # SQLite's default: a commit may stall for a checkpoint
    sqlite_checkpoints.install()
    checkpointer = sqlite_checkpoints.Checkpointer(interval_s=0.05)
    try:
        assert _autocheckpoint() == 0  # the open connection
        connection.close()
        assert _autocheckpoint() == 0  # and every new one
        checkpointer.start()
        _write(pages=1500)  # past the automatic threshold: only the thread may checkpoint
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = checkpointer.last
            if last is not None and last[1] > 0 and last[1] == last[2]:
                break  # the whole log copied back, by the thread
            time.sleep(0.05)
        else:
            raise AssertionError(f"the log was not checkpointed by the thread: {checkpointer.last}")
    finally:
        checkpointer.stop()
        sqlite_checkpoints.uninstall()
        connection.close()
    assert _autocheckpoint() == 1000  # other processes' (and tests') connections are left as they were


def test_a_failing_checkpoint_is_logged_once_and_tried_again(sqlite_only, caplog, monkeypatch):
    """A disk error (simulated: it is the operating system's) is logged once, not every second."""
    from django.db import connections

    checkpointer = sqlite_checkpoints.Checkpointer(interval_s=0.05)
    wrapper = connections["default"]  # this thread's, which checkpoint() uses when called here
    real_cursor = wrapper.cursor
    broken = {"on": True}

    def cursor(*args, **kwargs):
        if broken["on"]:
            raise OSError("disk I/O error")
        return real_cursor(*args, **kwargs)

    monkeypatch.setattr(wrapper, "cursor", cursor)
    caplog.set_level("INFO", logger="devices.sqlite_checkpoints")
    checkpointer.checkpoint()
    checkpointer.checkpoint()
    assert caplog.text.count("WAL checkpoint failed") == 1 and checkpointer.last is None
    broken["on"] = False
    checkpointer.checkpoint()
    assert checkpointer.last is not None and "WAL checkpoints work again" in caplog.text


def test_not_on_postgresql():
    if connection.vendor == "sqlite":
        pytest.skip("PostgreSQL only")
    assert sqlite_checkpoints.start_for_hub() is None
