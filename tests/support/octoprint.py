"""A real OctoPrint 1.11 with its Virtual Printer for the tests, and an in-memory adapter sink.

``octoprint_server`` is session-scoped: the OctoPrint virtualenv is built once
(``var/octoprint-venv``, reused by later runs) and one server serves every test
that asks for it. Nothing here skips: if OctoPrint cannot be built or started
the tests that need it error with the reason.

Import the fixtures into a test module (or a conftest) with
``from tests.support.octoprint import octoprint_server, octoprint_venv``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge.adapters.base import Adapter, ErrorInfo, JobInfo
from firmware_bridge.simulators.octoprint_server import (
    VirtualOctoPrint,
    ensure_octoprint_venv,
)

#: Waits on OctoPrint: generous, because the machine is shared and slow at times.
WAIT_S = 60.0


@pytest.fixture(scope="session")
def octoprint_venv() -> Path:
    """The OctoPrint virtualenv, built on first use (about a minute) and reused afterwards."""
    return ensure_octoprint_venv()


# Every module that imports the fixture gets its own FixtureDef; this keeps them on one server.
_shared: dict[str, Any] = {"server": None, "users": 0}
_shared_lock = threading.Lock()


@pytest.fixture(scope="session")
def octoprint_server(
    octoprint_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VirtualOctoPrint]:
    """One started OctoPrint for the whole session, its Virtual Printer connected."""
    with _shared_lock:
        if _shared["server"] is None:
            server = VirtualOctoPrint(tmp_path_factory.mktemp("octoprint"), venv=octoprint_venv)
            server.start()
            try:
                server.connect_printer(timeout=WAIT_S)
            except BaseException:
                server.stop()
                raise
            _shared["server"] = server
        _shared["users"] += 1
        server = _shared["server"]
    try:
        yield server
    finally:
        with _shared_lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                server.stop()
                _shared["server"] = None


def make_idle(server: VirtualOctoPrint, timeout: float = WAIT_S) -> None:
    """Bring the printer back to connected and not printing, whatever a previous test left."""
    flags = server.printer_flags()
    if not flags:
        server.connect_printer(timeout)
        flags = server.printer_flags()
    if flags.get("printing") or flags.get("paused") or flags.get("pausing"):
        server.job_command("cancel")
    server.wait_for("ready", timeout)


@dataclasses.dataclass(frozen=True)
class Report:
    kind: str  # status | telemetry | event
    data: dict[str, Any]
    at: float  # time.monotonic() when reported


class MemorySink:
    """An :class:`~firmware_bridge.adapters.base.AdapterSink` that only records (no MQTT)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.reports: list[Report] = []

    def set_status(
        self, *, state: str, job: JobInfo | None = None, error: ErrorInfo | None = None, ts: int | None = None
    ) -> None:
        self._record("status", {"state": state, "job": job, "error": error, "ts": ts})

    def telemetry(self, values: Mapping[str, float], ts: int | None = None) -> None:
        self._record("telemetry", dict(values))

    def event(
        self,
        type: str,
        *,
        job: JobInfo | None = None,
        detail: Mapping[str, Any] | None = None,
        ts: int | None = None,
    ) -> None:
        self._record("event", {"type": type, "job": job, "detail": dict(detail or {}), "ts": ts})

    def subscribe(self, topic: str, callback: Callable[[str, bytes], None]) -> None:
        raise AssertionError("the octoprint adapter must not subscribe to MQTT topics")

    def publish(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        raise AssertionError("the octoprint adapter must not publish to MQTT topics")

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        with self._cond:
            self.reports.append(Report(kind, data, time.monotonic()))
            self._cond.notify_all()

    # -- for the tests ----------------------------------------------------

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r.data for r in self.reports if r.kind == kind]

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.of("event") if type is None or e["type"] == type]

    @property
    def status(self) -> dict[str, Any] | None:
        statuses = self.of("status")
        return statuses[-1] if statuses else None

    @property
    def state(self) -> str | None:
        status = self.status
        return status["state"] if status else None

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
        """Poll ``condition`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                tail = [(r.kind, r.data) for r in self.reports[-12:]]
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}; last reports: {tail}"
                )
            with self._cond:
                self._cond.wait(0.1)

    def wait_state(self, state: str, timeout: float = WAIT_S) -> dict[str, Any]:
        return self.wait_for(lambda: self.status if self.state == state else None, f"state {state}", timeout)

    def wait_event(self, type: str, after: int = 0, timeout: float = WAIT_S) -> dict[str, Any]:
        """The first ``type`` event among the events after the first ``after`` ones."""

        def find() -> dict[str, Any] | None:
            found = [e for e in self.of("event")[after:] if e["type"] == type]
            return found[0] if found else None

        return self.wait_for(find, f"event {type}", timeout)


class AdapterRunner:
    """Drives an adapter the way the bridge does: ``setup()``, then ``poll()`` every ``poll_interval_s``."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"adapter-{adapter.machine}", daemon=True)

    def _run(self) -> None:
        self.adapter.setup()
        while not self._stop.is_set():
            try:
                self.adapter.poll()
            except Exception as exc:  # recorded: a test asserts none happened
                self.errors.append(exc)
            self._stop.wait(self.adapter.poll_interval_s)

    def __enter__(self) -> AdapterRunner:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        self.adapter.close()
        assert not self.errors, f"poll() raised: {self.errors!r}"
