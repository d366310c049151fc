"""Commands, acks, interlock and adapter supervision, through a real broker."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import protocol
from firmware_bridge.adapters.base import ADAPTERS, Adapter, CommandError, register
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.firmware_bridge.conftest import Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto

LAB = "cmd-lab"


class BrokenAdapter(Adapter):
    """Test-only: every command fails with an unexpected exception; polls work."""

    name = "test-broken"
    poll_interval_s = 0.05

    def setup(self) -> None:
        self.sink.set_status(state="idle")

    def poll(self) -> None:
        pass

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        raise OSError("controller did not answer")


class HangingAdapter(Adapter):
    """Test-only: ``pause`` hangs until the test releases it (a controller that never answers)."""

    name = "test-hanging"
    poll_interval_s = 0.05
    release = threading.Event()
    entered = 0

    def setup(self) -> None:
        self.sink.set_status(state="running")

    def poll(self) -> None:
        pass

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        if action == "pause":
            type(self).entered += 1
            type(self).release.wait(120)
            return
        if action != "resume":
            super().command(action, params)


class StubbornRelayAdapter(Adapter):
    """Test-only: an interlocked machine whose relay never reports the change (a stuck contactor).

    Like the plug adapters, it records the wanted state (and keeps enforcing it) but answers
    ``not_confirmed`` because the machine did not show the change.
    """

    name = "test-stubborn"
    poll_interval_s = 0.05

    def setup(self) -> None:
        self.sink.set_status(state="idle")

    def poll(self) -> None:
        pass

    def command(self, action: str, params: Mapping[str, Any] | None = None) -> None:
        if action == "disable":
            self.set_enabled(False)
            raise CommandError(protocol.NOT_CONFIRMED, "relay still reports on")
        super().command(action, params)


@pytest.fixture(autouse=True)
def _broken_adapter() -> Iterator[None]:
    register(BrokenAdapter)
    register(HangingAdapter)
    register(StubbornRelayAdapter)
    yield
    ADAPTERS.pop(BrokenAdapter.name, None)
    ADAPTERS.pop(HangingAdapter.name, None)
    ADAPTERS.pop(StubbornRelayAdapter.name, None)


MACHINES = [
    {"lab": LAB, "machine": "free", "adapter": "counter", "options": {"interval_s": 0.05, "job_s": 1000}},
    {
        "lab": LAB,
        "machine": "locked",
        "adapter": "counter",
        "interlock": True,
        "options": {"interval_s": 0.05, "job_s": 1000},
    },
    {"lab": LAB, "machine": "broken", "adapter": "test-broken"},
]


@pytest.fixture
def bridge(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Bridge]:
    b = Bridge(load(write_config(tmp_path / "bridge.toml", mosquitto, MACHINES)))
    b.start()
    assert b.transport.wait_connected(60)
    yield b
    b.stop()


def send(
    collector: Collector,
    machine: str,
    action: str,
    *,
    cid: str | None = None,
    expires_in_ms: int = 60_000,
    **extra: Any,
) -> str:
    cid = cid or str(uuid.uuid4())
    now = protocol.now_ms()
    body = {
        "v": 1,
        "id": cid,
        "action": action,
        "ts": now,
        "expires": now + expires_in_ms,
        "booking": None,
        **extra,
    }
    collector.publish(protocol.topic_cmd(LAB, machine), body)
    return cid


def acks(collector: Collector, machine: str, cid: str | None) -> list[protocol.CommandAck]:
    return [a for _, a in collector.of_kind(protocol.CMD_ACK, LAB, machine) if a.id == cid]


def ack_of(collector: Collector, machine: str, cid: str | None, n: int = 1) -> protocol.CommandAck:
    return wait_until(
        lambda: len(found := acks(collector, machine, cid)) >= n and found[n - 1], what=f"ack {n} of {cid}"
    )


def status(collector: Collector, machine: str) -> protocol.Status | None:
    return collector.last(protocol.STATUS, LAB, machine)


def wait_state(collector: Collector, machine: str, state: str) -> protocol.Status:
    return wait_until(
        lambda: (s := status(collector, machine)) is not None and s.state == state and s,
        what=f"{machine} {state}",
    )


def test_pause_resume_cancel_and_idempotency(bridge: Bridge, collector: Collector) -> None:
    wait_state(collector, "free", "running")
    cid = send(collector, "free", "pause")
    assert ack_of(collector, "free", cid) == protocol.CommandAck(
        id=cid, ok=True, ts=acks(collector, "free", cid)[0].ts
    )
    wait_state(collector, "free", "paused")
    # The same id again: not executed twice (a second pause would be invalid_state), same answer.
    send(collector, "free", "pause", cid=cid)
    again = ack_of(collector, "free", cid, n=2)
    assert again.ok is True and again.error is None
    other = ack_of(collector, "free", send(collector, "free", "pause"))
    assert other.ok is False and other.error.code == "invalid_state"
    assert ack_of(collector, "free", send(collector, "free", "resume")).ok
    wait_state(collector, "free", "running")
    assert ack_of(collector, "free", send(collector, "free", "cancel")).ok
    # The ack is published directly, the event through the spool: it may come a little later.
    wait_until(
        lambda: any(e.type == "job_cancelled" for _, e in collector.of_kind(protocol.EVENT, LAB, "free")),
        what="job_cancelled",
    )


def test_expired_command_is_refused_not_run(bridge: Bridge, collector: Collector) -> None:
    wait_state(collector, "free", "running")
    ack = ack_of(collector, "free", send(collector, "free", "pause", expires_in_ms=-1000))
    assert not ack.ok and ack.error.code == "expired"
    assert bridge.machines[f"{LAB}/free"].adapter.state == "running"


def test_invalid_commands_are_acknowledged(bridge: Bridge, collector: Collector) -> None:
    bad = ack_of(collector, "free", send(collector, "free", "explode"))
    assert not bad.ok and bad.error.code == "invalid" and "action" in bad.error.message
    collector.publish(protocol.topic_cmd(LAB, "free"), b"not json at all")
    garbage = ack_of(collector, "free", None)
    assert not garbage.ok and garbage.error.code == "invalid"
    collector.publish(protocol.topic_cmd(LAB, "free"), json.dumps({"v": 1, "id": "x1", "action": "pause"}))
    assert ack_of(collector, "free", "x1").error.message.startswith("ts")


def cmd_acks(collector: Collector, machine: str) -> list[protocol.CommandAck]:
    return [a for _, a in collector.of_kind(protocol.CMD_ACK, LAB, machine)]


def test_the_bridge_acks_a_command_it_cannot_parse(bridge: Bridge, collector: Collector) -> None:
    """Every unparsable command gets exactly one ``invalid`` ack: with its id when one is readable."""
    now = protocol.now_ms()
    good = {"v": 1, "action": "pause", "ts": now, "expires": now + 60_000}
    huge = "9" * 5000
    cases: list[tuple[bytes | str, str | None, str]] = [
        (b"\xff\xfe not UTF-8", None, "payload: not UTF-8"),
        ("{not json", None, "payload: not JSON"),
        ("[1, 2]", None, "payload: must be a JSON object"),
        (json.dumps({k: v for k, v in good.items() if k != "v"} | {"id": "no-v"}), "no-v", "v: missing"),
        (json.dumps(good), None, "id: missing"),
        (json.dumps(good | {"id": "has spaces"}), None, "id: must be an id"),
        (json.dumps(good | {"id": 42}), None, "id: must be an id"),
        (json.dumps(good | {"id": "a1", "action": "explode"}), "a1", "action: must be one of"),
        (json.dumps(good | {"id": "a2", "action": "x" * 12_000}), "a2", "action: must be one of"),
        (json.dumps(good | {"id": "a3", "ts": "now"}), "a3", "ts: must be an integer"),
        (json.dumps(good | {"id": "a4", "expires": -5}), "a4", "expires: must be >= 0"),
        (json.dumps(good | {"id": "a5", "params": [1]}), "a5", "params: must be an object"),
        (json.dumps(good | {"id": "a6", "booking": {"x": 1}}), "a6", "booking: must be"),
        (f'{{"v":1,"id":"a7","action":"pause","ts":{huge}}}', None, "payload: not JSON"),
        ('{"v":1,"id":"a8","action":"pause","ts":1,"params":{"x":NaN}}', "a8", "payload: NaN"),
        ('{"v":1,"id":"a9","params":' + "[" * 3000 + "]" * 3000 + "}", None, "payload: nested too deeply"),
        (json.dumps(good | {"id": "b1", "pad": "x" * protocol.MAX_PAYLOAD_BYTES}), None, "payload: "),
    ]
    before = len(cmd_acks(collector, "free"))
    for n, (raw, cid, message) in enumerate(cases, start=1):
        collector.publish(protocol.topic_cmd(LAB, "free"), raw.encode() if isinstance(raw, str) else raw)
        got = wait_until(
            lambda n=n: len(found := cmd_acks(collector, "free")) >= before + n and found[before + n - 1],
            what=f"the ack of case {n}",
        )
        assert (got.id, got.ok, got.error.code) == (cid, False, "invalid"), (n, got)
        assert got.error.message.startswith(message), (n, got.error.message)
        assert len(got.error.message) <= 2048
    assert bridge.machines[f"{LAB}/free"].adapter.state == "running"  # nothing was carried out
    assert len(cmd_acks(collector, "free")) == before + len(cases)  # exactly one ack each


def test_a_command_the_bridge_fails_on_is_still_acknowledged(
    bridge: Bridge, collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool's disk fails while the command is looked up: ``device_error``, never silence."""
    import sqlite3

    def broken(*args: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(bridge.spool, "get_command", broken)
    ack = ack_of(collector, "free", send(collector, "free", "pause"))
    assert not ack.ok and ack.error.code == "device_error" and "disk I/O error" in ack.error.message


def test_unsupported_and_device_error(bridge: Bridge, collector: Collector) -> None:
    ack = ack_of(collector, "free", send(collector, "free", "enable"))
    assert ack.error.code == "unsupported"
    ack = ack_of(collector, "broken", send(collector, "broken", "pause"))
    assert ack.error.code == "device_error" and "did not answer" in ack.error.message


def test_interlock_starts_disabled_and_state_survives_restart(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, MACHINES))
    b = Bridge(cfg)
    b.start()
    try:
        first = wait_until(lambda: status(collector, "locked"), what="locked status")
        assert first.enabled is False
        assert b.machines[f"{LAB}/locked"].adapter.state == "idle"  # no job starts while disabled
        assert ack_of(collector, "locked", send(collector, "locked", "enable")).ok
        wait_until(
            lambda: status(collector, "locked").enabled and status(collector, "locked").state == "running",
            what="enabled and running",
        )
    finally:
        b.stop()
    b = Bridge(cfg)
    b.start()
    try:
        assert b.machines[f"{LAB}/locked"].initial_enabled is True
        wait_until(lambda: b.machines[f"{LAB}/locked"].ready, what="adapter ready")
        assert b.machines[f"{LAB}/locked"].adapter.enabled is True
        assert ack_of(collector, "locked", send(collector, "locked", "disable")).ok
        wait_until(lambda: status(collector, "locked").enabled is False, what="disabled")
    finally:
        b.stop()
    assert Bridge(cfg).machines[f"{LAB}/locked"].initial_enabled is False


def test_an_unconfirmed_disable_is_not_acked_ok_and_stays_wanted_after_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    machines = [{"lab": LAB, "machine": "stuck", "adapter": "test-stubborn", "interlock": True}]
    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, machines))
    b = Bridge(cfg)
    b.start()
    try:
        wait_until(lambda: b.machines[f"{LAB}/stuck"].ready, what="adapter ready")
        # The bridge subscribes to its cmd topics before it publishes anything on a connection:
        # once its status arrives, a command sent now cannot be lost.
        wait_until(lambda: status(collector, "stuck"), what="the bridge's first status")
        assert ack_of(collector, "stuck", send(collector, "stuck", "enable")).ok
        ack = ack_of(collector, "stuck", send(collector, "stuck", "disable"))
        assert not ack.ok and ack.error.code == protocol.NOT_CONFIRMED
    finally:
        b.stop()
    # The machine did not confirm, but the wanted state is "disabled": a restart must not re-enable it.
    assert Bridge(cfg).machines[f"{LAB}/stuck"].initial_enabled is False


def test_enabling_a_machine_whose_state_does_not_change_publishes_a_newer_status(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    """The server keeps a machine's status only when its ``ts`` is newer (devices.status): an interlock
    that changes while the state stays idle (a GRBL laser enabled at a check-in) must come with a new ts."""
    machines = [{"lab": LAB, "machine": "stuck", "adapter": "test-stubborn", "interlock": True}]
    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, machines))
    b = Bridge(cfg)
    b.start()
    try:
        wait_until(lambda: b.machines[f"{LAB}/stuck"].ready, what="adapter ready")
        first = wait_until(
            lambda: (s := status(collector, "stuck")) is not None and s.enabled is False and s,
            what="the first, disabled status",
        )
        assert ack_of(collector, "stuck", send(collector, "stuck", "enable")).ok
        enabled = wait_until(
            lambda: (s := status(collector, "stuck")) is not None and s.enabled and s, what="enabled status"
        )
        assert enabled.state == first.state == "idle"
        assert enabled.ts > first.ts
    finally:
        b.stop()


def test_setup_failures_retry_and_poll_errors_do_not_kill(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    machines = [
        {
            "lab": LAB,
            "machine": "flaky",
            "adapter": "counter",
            "options": {"interval_s": 0.05, "fail_setup": 2, "fail_poll_every": 3},
        }
    ]
    b = Bridge(load(write_config(tmp_path / "bridge.toml", mosquitto, machines)))
    b.start()
    try:
        offline = wait_until(
            lambda: next(
                (
                    st
                    for _, st in collector.of_kind(protocol.STATUS, LAB, "flaky")
                    if st.state == "offline" and st.error is not None
                ),
                None,
            ),
            what="offline with an error while setup fails",
        )
        assert offline.error.code == "setup_failed"
        wait_state(collector, "flaky", "running")
        runner = b.machines[f"{LAB}/flaky"]
        wait_until(lambda: runner.adapter.polls >= 10, what="polls continue after failures")
        assert runner.adapter.count >= 6
    finally:
        b.stop()


def test_hanging_command_times_out_and_blocks_nothing(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    HangingAdapter.release = threading.Event()
    HangingAdapter.entered = 0
    machines = [{"lab": LAB, "machine": "stuck", "adapter": "test-hanging"}]
    config = write_config(tmp_path / "bridge.toml", mosquitto, machines, extra_bridge="command_timeout_s = 1")
    b = Bridge(load(config))
    b.start()
    stopper = threading.Thread(target=b.stop)
    try:
        wait_state(collector, "stuck", "running")
        hung = ack_of(collector, "stuck", send(collector, "stuck", "pause"))
        assert not hung.ok and hung.error.code == "device_error"
        assert "did not finish within 1 s" in hung.error.message
        # The machine's next command is not stuck behind the hanging one.
        assert ack_of(collector, "stuck", send(collector, "stuck", "resume")).ok
        for _ in range(2):
            assert ack_of(collector, "stuck", send(collector, "stuck", "pause")).error.code == "device_error"
        assert HangingAdapter.entered == 3
        # Three calls still hang: the next is refused without calling the adapter again.
        refused = ack_of(collector, "stuck", send(collector, "stuck", "pause"))
        assert refused.error.code == "device_error" and "still hang" in refused.error.message
        assert HangingAdapter.entered == 3
        # stop() returns although the adapter never answers.
        stopper.start()
        wait_until(lambda: not stopper.is_alive(), what="stop() to return")
    finally:
        HangingAdapter.release.set()
        if not stopper.is_alive() and stopper.ident is None:
            b.stop()
