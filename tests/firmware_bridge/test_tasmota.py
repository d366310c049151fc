"""The tasmota adapter against a real Mosquitto and the simulated Tasmota plug."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import protocol
from firmware_bridge.adapters import ADAPTERS
from firmware_bridge.adapters.base import CommandError
from firmware_bridge.adapters.tasmota import TasmotaAdapter
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from firmware_bridge.simulators.plug import PlugSimulator
from tests.firmware_bridge.conftest import Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.plug_sink import AdapterRunner, Observer, PlugTestSink

TOPIC = "tasmota_5C1A2B"
LAB = "bxl-centre"
FAST = {"on_w": 100, "off_w": 50, "on_s": 0.5, "off_s": 1.0, "confirm_timeout_s": 20}


@pytest.fixture
def sink(mosquitto: Mosquitto) -> Iterator[PlugTestSink]:
    s = PlugTestSink(mosquitto.url())
    yield s
    s.close()


def start_plug(mosquitto: Mosquitto, **kwargs: Any) -> PlugSimulator:
    options: dict[str, Any] = {
        "profile": "manual",
        "tele_period_s": 0.5,
        "energy_wh": 5000.0,
        "energy_res": 5,
        "relay_on": True,
    }
    options.update(kwargs)
    sim = PlugSimulator("tasmota", TOPIC, mosquitto.url(), **options)
    sim.start()
    return sim


@pytest.fixture
def plug(mosquitto: Mosquitto) -> Iterator[PlugSimulator]:
    sim = start_plug(mosquitto)
    yield sim
    sim.stop()


def make(
    sink: PlugTestSink, *, interlock: bool = False, enabled: bool = True, **options: Any
) -> TasmotaAdapter:
    adapter = TasmotaAdapter(
        "epilog-laser", {"topic": TOPIC, **FAST, **options}, sink, interlock=interlock, enabled=enabled
    )
    sink.adapter = adapter
    return adapter


def test_registered_by_name() -> None:
    assert ADAPTERS["tasmota"] is TasmotaAdapter


def test_asks_the_plug_for_its_state_at_start(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: adapter.relay_on is True, "the relay state")
        sink.wait_for(lambda: sink.state == "idle", "idle")
    assert (f"cmnd/{TOPIC}/POWER", "", False) in sink.published
    assert (f"cmnd/{TOPIC}/Status", "10", False) in sink.published
    assert all(not retain for _, _, retain in sink.published)


def test_busy_then_idle_is_one_job_through_pauses(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink)
    with AdapterRunner(adapter) as runner:
        plug.set_load(15)  # standby
        sink.wait_for(lambda: sink.state == "idle", "idle at standby")
        plug.set_load(850)  # cutting
        started = sink.wait_for(lambda: sink.events("job_started"), "job_started")
        assert sink.state == "running"
        job = started[0]["job"]
        assert sink.of("status")[-1]["job"] == job
        plug.set_load(120)  # a pause: exhaust and chiller only, inside the band
        sink.wait_for(lambda: sink.last_value("power_w") == 120, "the pause's power")
        runner.wait_polls(6)  # longer than off_s: the job must go on
        assert sink.state == "running" and not sink.events("job_finished")
        plug.set_load(1100)
        sink.wait_for(lambda: sink.last_value("power_w") == 1100, "cutting again")
        plug.set_load(15)
        finished = sink.wait_for(lambda: sink.events("job_finished"), "job_finished")
        assert sink.state == "idle"
    assert len(sink.events("job_started")) == 1 and len(finished) == 1
    assert finished[0]["job"].id == job.id
    detail = finished[0]["detail"]
    assert detail["duration_s"] >= 1.0  # from the crossing at 850 W to the drop to 15 W
    assert 0 < detail["energy_wh"] < plug.energy_wh - 5000.0 + 0.01
    assert finished[0]["ts"] - job.started_ts == pytest.approx(detail["duration_s"] * 1000, abs=2)
    telemetry = sink.of("telemetry")
    assert {"power_w", "energy_wh", "voltage_v", "current_a"} <= set(telemetry[-1])
    assert runner.errors == []


def test_energy_survives_a_counter_reset(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink)
    with AdapterRunner(adapter):
        plug.set_load(3000)
        sink.wait_for(lambda: plug.energy_wh > 5000.3, "the plug to count")
        plug.set_load(0)
        # With no load the counter stands still: wait until the adapter reports exactly it.
        before = sink.wait_for(
            lambda: (v := sink.last_value("energy_wh")) is not None and abs(v - plug.energy_wh) < 0.011 and v,
            "energy before the reset",
        )
        plug.reboot()  # the counter restarts from zero
        sink.wait_for(lambda: adapter.energy.resets == 1, "the reset to be seen")
        plug.set_load(2500)
        sink.wait_for(lambda: plug.energy_wh > 0.3, "the plug to count again")
        plug.set_load(0)
        after = sink.wait_for(
            lambda: (
                (v := sink.last_value("energy_wh")) is not None
                and abs(v - before - plug.energy_wh) < 0.011
                and v
            ),
            "energy after the reset = before + the new counter",
        )
    assert after > before > 5000
    energies = [t["energy_wh"] for t in sink.of("telemetry") if "energy_wh" in t]
    assert all(b >= a for a, b in itertools.pairwise(energies))
    assert "offline" in [s["state"] for s in sink.of("status")]  # the reboot was seen through the LWT


def test_interlock_starts_disabled_and_switches_only_on_confirmation(
    plug: PlugSimulator, sink: PlugTestSink
) -> None:
    assert plug.relay_on
    adapter = make(sink, interlock=True, enabled=False)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: not plug.relay_on and adapter.relay_on is False, "the relay switched off")
        assert sink.events("interlock_enforced") == []  # restoring the start state is no violation
        adapter.command("enable")
        assert plug.relay_on and adapter.enabled
        assert sink.of("status")[-1]["enabled"] is True
        adapter.command("enable")  # already on: confirmed again, not toggled
        assert plug.relay_on
        adapter.command("disable")
        assert not plug.relay_on and not adapter.enabled
        assert sink.of("status")[-1]["enabled"] is False
    switching = [p for t, p in plug.commands if t == f"cmnd/{TOPIC}/POWER" and p]
    assert switching == ["OFF", "ON", "ON", "OFF"]
    assert all(not retain for _, _, retain in sink.published)


@pytest.mark.parametrize("enabled", [False, True])
def test_restart_does_not_toggle_a_relay_already_right(
    mosquitto: Mosquitto, sink: PlugTestSink, enabled: bool
) -> None:
    plug = start_plug(mosquitto, relay_on=enabled)
    try:
        adapter = make(sink, interlock=True, enabled=not enabled)
        adapter.set_enabled(enabled, initial=True)  # the bridge restores the last commanded state
        with AdapterRunner(adapter) as runner:
            sink.wait_for(lambda: adapter.relay_on is enabled, "the relay state")
            runner.wait_polls(4)
            assert adapter.enabled is enabled
        assert plug.relay_on is enabled
        power_commands = [p for t, p in plug.commands if t == f"cmnd/{TOPIC}/POWER"]
        assert power_commands and set(power_commands) == {""}  # only queried, never switched
    finally:
        plug.stop()


def test_relay_switched_on_at_the_plug_while_disabled_is_switched_off(
    plug: PlugSimulator, sink: PlugTestSink
) -> None:
    adapter = make(sink, interlock=True, enabled=False)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: adapter.relay_on is False, "disabled")
        plug.press_button()
        sink.wait_for(lambda: sink.events("interlock_enforced"), "the interlock to act")
        sink.wait_for(lambda: not plug.relay_on, "the relay off again")
        assert sink.events("power_on") and sink.events("power_off")


def test_relay_switched_off_at_the_plug_while_enabled_stays_off(
    plug: PlugSimulator, sink: PlugTestSink
) -> None:
    adapter = make(sink, interlock=True, enabled=True)
    with AdapterRunner(adapter) as runner:
        sink.wait_for(lambda: adapter.relay_on is True, "enabled")
        plug.press_button()
        sink.wait_for(lambda: adapter.relay_on is False, "the relay report")
        runner.wait_polls(4)
        assert not plug.relay_on and not adapter.enabled  # never switched on unasked


def test_disable_ends_a_running_job_at_once(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink, interlock=True, enabled=True, off_s=3600)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: adapter.enabled, "enabled")
        plug.set_load(900)
        sink.wait_for(lambda: sink.events("job_started"), "job_started")
        adapter.command("disable")
        # off_s is an hour: only the confirmed relay-off can end the job within the wait.
        sink.wait_for(lambda: sink.events("job_finished"), "job_finished")
        assert sink.state == "idle"


def test_a_plug_that_does_not_switch_is_not_acked_ok(mosquitto: Mosquitto, sink: PlugTestSink) -> None:
    observer = Observer(mosquitto.url(), [f"cmnd/{TOPIC}/#"])
    try:
        observer.publish(f"tele/{TOPIC}/LWT", "Online", retain=True)  # online, but it never answers
        adapter = make(sink, interlock=True, enabled=False, confirm_timeout_s=1)
        with AdapterRunner(adapter):
            sink.wait_for(lambda: sink.state == "idle", "the plug online")
            with pytest.raises(CommandError) as err:
                adapter.command("enable")
            assert err.value.code == "not_confirmed"
            assert "did not confirm" in err.value.message
            assert not adapter.enabled
        observer.wait_for(lambda: b"ON" in observer.on(f"cmnd/{TOPIC}/POWER"), "the command on the wire")
    finally:
        observer.close()


def test_plug_offline_through_its_lwt(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink, interlock=True, enabled=True)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: adapter.enabled and sink.state == "idle", "enabled and idle")
        plug.go_offline()
        sink.wait_for(lambda: sink.state == "offline", "offline")
        assert sink.of("status")[-1]["enabled"] is False
        with pytest.raises(CommandError) as err:
            adapter.command("disable")
        assert err.value.code == "device_error"
        plug.go_online()
        sink.wait_for(lambda: sink.state == "idle", "idle again")
        # The wanted state is now "disabled" (the failed command): the adapter switches the relay off.
        sink.wait_for(lambda: not plug.relay_on, "the relay off once the plug is back")


def test_job_continues_across_a_short_offline_spell(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink)
    with AdapterRunner(adapter):
        plug.set_load(900)
        sink.wait_for(lambda: sink.events("job_started"), "job_started")
        plug.go_offline()
        sink.wait_for(lambda: sink.state == "offline", "offline")
        assert sink.of("status")[-1]["job"] is not None
        plug.go_online()
        sink.wait_for(lambda: sink.state == "running", "running again")
        plug.set_load(10)
        sink.wait_for(lambda: sink.events("job_finished"), "job_finished")
    assert len(sink.events("job_started")) == 1


@pytest.mark.parametrize(
    ("suffix", "payload"),
    [
        ("tele/{t}/SENSOR", b"not json"),
        ("tele/{t}/SENSOR", b"[1, 2]"),
        ("tele/{t}/SENSOR", json.dumps({"ENERGY": {"Power": "lots"}}).encode()),
        ("tele/{t}/SENSOR", json.dumps({"ENERGY": {"Total": -3, "Power": 5}}).encode()),
        ("tele/{t}/SENSOR", json.dumps({"ENERGY": "x"}).encode()),
        ("tele/{t}/STATE", json.dumps({"POWER": "MAYBE"}).encode()),
        ("tele/{t}/LWT", b"Sleeping"),
        ("stat/{t}/POWER", b"\xff\xfe"),
        ("stat/{t}/RESULT", b"{"),
        ("stat/{t}/STATUS10", json.dumps({"StatusSNS": 3}).encode()),
    ],
)
def test_malformed_payloads_are_counted_and_harmless(
    plug: PlugSimulator, sink: PlugTestSink, mosquitto: Mosquitto, suffix: str, payload: bytes
) -> None:
    adapter = make(sink)
    observer = Observer(mosquitto.url(), [])
    try:
        with AdapterRunner(adapter) as runner:
            sink.wait_for(lambda: sink.state == "idle", "idle")
            observer.publish(suffix.format(t=TOPIC), payload)
            sink.wait_for(lambda: adapter.malformed_count == 1, "the malformed message to be counted")
            plug.set_load(900)  # and the adapter still works
            sink.wait_for(lambda: sink.events("job_started"), "job_started after the bad message")
            assert runner.errors == []
    finally:
        observer.close()
    assert sink.state == "running" and adapter.online


def test_sensor_of_another_kind_is_ignored(
    plug: PlugSimulator, sink: PlugTestSink, mosquitto: Mosquitto
) -> None:
    adapter = make(sink)
    observer = Observer(mosquitto.url(), [])
    try:
        with AdapterRunner(adapter):
            sink.wait_for(lambda: sink.state == "idle", "idle")
            observer.publish(f"tele/{TOPIC}/SENSOR", json.dumps({"DS18B20": {"Temperature": 21.5}}))
            observer.publish(f"stat/{TOPIC}/RESULT", json.dumps({"TelePeriod": 10}))
            plug.set_load(700)
            sink.wait_for(lambda: sink.last_value("power_w") == 700, "the next reading")
    finally:
        observer.close()
    assert adapter.malformed_count == 0


def test_commands_other_than_the_interlock_are_unsupported(plug: PlugSimulator, sink: PlugTestSink) -> None:
    adapter = make(sink)
    for action in ("pause", "resume", "cancel", "enable", "disable"):
        with pytest.raises(CommandError) as err:
            adapter.command(action)
        assert err.value.code == "unsupported"


def test_wrong_options_are_refused() -> None:
    problems = TasmotaAdapter.validate_options({"topic": "a/+", "on_w": 10, "off_w": 20, "off_s": -1})
    assert len(problems) == 3, problems
    with pytest.raises(ValueError, match="topic is missing"):
        TasmotaAdapter("m", {}, None)  # type: ignore[arg-type]


# -- end to end: the real bridge (transport, spool, commands) with the simulated plug ---------------


def _send(collector: Collector, machine: str, action: str) -> str:
    cid = str(uuid.uuid4())
    now = protocol.now_ms()
    body = {"v": 1, "id": cid, "action": action, "ts": now, "expires": now + 60_000, "booking": None}
    collector.publish(protocol.topic_cmd(LAB, machine), body)
    return cid


def _ack(collector: Collector, machine: str, cid: str) -> protocol.CommandAck:
    return wait_until(
        lambda: next((a for _, a in collector.of_kind(protocol.CMD_ACK, LAB, machine) if a.id == cid), None),
        what=f"the ack of {cid}",
    )


def _status(collector: Collector, machine: str) -> protocol.Status | None:
    return collector.last(protocol.STATUS, LAB, machine)


def test_end_to_end_through_the_bridge(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, plug: PlugSimulator
) -> None:
    machine = "epilog-laser"
    machines = [
        {
            "lab": LAB,
            "machine": machine,
            "adapter": "tasmota",
            "interlock": True,
            "options": {"topic": TOPIC, **FAST},
        }
    ]
    config = load(write_config(tmp_path / "bridge.toml", mosquitto, machines))
    bridge = Bridge(config)
    bridge.start()
    try:
        # An interlock machine starts disabled: the bridge switched the plug's relay off.
        wait_until(lambda: not plug.relay_on, what="the relay switched off at start")
        wait_until(
            lambda: (s := _status(collector, machine)) and s.state == "idle" and not s.enabled,
            what="idle and disabled",
        )
        ack = _ack(collector, machine, _send(collector, machine, "enable"))
        assert ack.ok and ack.error is None
        assert plug.relay_on  # the ack came after the plug confirmed
        wait_until(lambda: (s := _status(collector, machine)) and s.enabled, what="status enabled")

        plug.set_load(900)
        running = wait_until(
            lambda: (s := _status(collector, machine)) and s.state == "running" and s, what="running"
        )
        assert running.job is not None and running.job.name
        plug.set_load(12)
        finished = wait_until(
            lambda: [
                e for _, e in collector.of_kind(protocol.EVENT, LAB, machine) if e.type == "job_finished"
            ],
            what="job_finished",
        )[0]
        assert finished.job.id == running.job.id
        assert finished.detail["duration_s"] > 0 and finished.detail["energy_wh"] > 0
        values = [t.values for _, t in collector.of_kind(protocol.TELEMETRY, LAB, machine)]
        assert any(v.get("power_w") == 900 for v in values)
        assert all(v["energy_wh"] >= 5000 for v in values if "energy_wh" in v)

        pause = _ack(collector, machine, _send(collector, machine, "pause"))
        assert not pause.ok and pause.error.code == "unsupported"
        assert _ack(collector, machine, _send(collector, machine, "disable")).ok
        assert not plug.relay_on
    finally:
        bridge.stop()

    # A restart restores "disabled" without touching a relay that is already off.
    seen = len(plug.commands)
    bridge = Bridge(config)
    bridge.start()
    try:
        adapter = wait_until(lambda: bridge.machines[f"{LAB}/{machine}"].adapter, what="the adapter")
        wait_until(
            lambda: adapter.relay_on is False and not adapter._restore_pending, what="the relay state read"
        )
        assert adapter._restore_to is None
        after = plug.commands[seen:]
        assert not [p for t, p in after if t == f"cmnd/{TOPIC}/POWER" and p]
    finally:
        bridge.stop()
    assert not plug.relay_on


def test_relay_state_is_asked_again_until_known(mosquitto: Mosquitto, sink: PlugTestSink) -> None:
    """The first query can go nowhere (no plug yet, or the bridge not connected): the adapter asks again."""
    adapter = make(sink, interlock=True, enabled=True)
    with AdapterRunner(adapter):
        assert (f"cmnd/{TOPIC}/POWER", "", False) in sink.published  # setup() asked; nobody listened
        device = Observer(mosquitto.url(), [f"cmnd/{TOPIC}/#"])
        try:
            device.publish(f"tele/{TOPIC}/LWT", "Online", retain=True)
            device.wait_for(lambda: device.on(f"cmnd/{TOPIC}/POWER"), "the adapter's second query")
            assert device.on(f"cmnd/{TOPIC}/POWER")[0] == b""
            device.publish(f"stat/{TOPIC}/POWER", "ON")
            sink.wait_for(lambda: adapter.relay_on is True and adapter.enabled, "the relay state")
        finally:
            device.close()


def test_plug_going_offline_fails_a_waiting_command(mosquitto: Mosquitto, sink: PlugTestSink) -> None:
    device = Observer(mosquitto.url(), [f"cmnd/{TOPIC}/POWER"])
    try:
        device.publish(f"tele/{TOPIC}/LWT", "Online", retain=True)
        adapter = make(sink, interlock=True, enabled=False, confirm_timeout_s=3600)
        with AdapterRunner(adapter):
            sink.wait_for(lambda: sink.state == "idle", "online")
            errors: list[CommandError] = []

            def enable() -> None:
                try:
                    adapter.command("enable")
                except CommandError as exc:
                    errors.append(exc)

            waiter = threading.Thread(target=enable)
            waiter.start()
            device.wait_for(lambda: b"ON" in device.on(f"cmnd/{TOPIC}/POWER"), "the command")
            device.publish(f"tele/{TOPIC}/LWT", "Offline", retain=True)
            waiter.join(timeout=30)
            assert not waiter.is_alive()
            assert errors and errors[0].code == "device_error" and "offline" in errors[0].message
    finally:
        device.close()


def test_energy_total_survives_a_bridge_restart_after_a_counter_reset(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, plug: PlugSimulator
) -> None:
    """The counter's base is kept in the spool file: energy_wh never drops, not even across a restart."""
    machine = "epilog-laser"
    machines = [{"lab": LAB, "machine": machine, "adapter": "tasmota", "options": {"topic": TOPIC, **FAST}}]
    config = load(write_config(tmp_path / "bridge.toml", mosquitto, machines))

    def energies() -> list[float]:
        return [
            t.values["energy_wh"]
            for _, t in collector.of_kind(protocol.TELEMETRY, LAB, machine)
            if "energy_wh" in t.values
        ]

    bridge = Bridge(config)
    bridge.start()
    try:
        wait_until(lambda: any(e >= 5000 for e in energies()), what="the plug's counter")
        plug.reboot()  # the plug's counter restarts from zero while the bridge runs
        adapter = bridge.machines[f"{LAB}/{machine}"].adapter
        wait_until(lambda: adapter.energy.resets == 1, what="the reset to be seen")
        plug.set_load(2500)
        wait_until(lambda: plug.energy_wh > 0.3, what="the plug to count again")
        plug.set_load(0)
        wait_until(lambda: bridge.wait_idle(0.1), what="the spool to drain")
        before = wait_until(lambda: max(energies(), default=0) > 5000.3 and max(energies()), what="the total")
    finally:
        bridge.stop()
    seen = len(energies())
    bridge = Bridge(config)
    bridge.start()
    try:
        after = wait_until(lambda: energies()[seen:], what="energy after the restart")
        assert min(after) >= before - 0.011  # the plug's raw counter alone would be about 0.3 Wh
        assert bridge.machines[f"{LAB}/{machine}"].adapter.energy.total_wh >= 5000
    finally:
        bridge.stop()
