"""The shelly adapter (Gen2, and Gen1) against a real Mosquitto and the simulated Shelly plug."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from firmware_bridge import protocol
from firmware_bridge.adapters import ADAPTERS
from firmware_bridge.adapters.base import CommandError
from firmware_bridge.adapters.shelly import ShellyAdapter
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from firmware_bridge.simulators.plug import PlugSimulator
from tests.firmware_bridge.conftest import Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto
from tests.support.plug_sink import AdapterRunner, Observer, PlugTestSink

PREFIX = {2: "shellyplusplugs-a8032ab12345", 1: "shellies/shellyplug-s-7A1B2C"}
KIND = {2: "shelly", 1: "shelly-gen1"}
FAST = {"on_w": 100, "off_w": 50, "on_s": 0.5, "off_s": 1.0, "confirm_timeout_s": 20}


@pytest.fixture(params=[2, 1], ids=["gen2", "gen1"])
def gen(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def sink(mosquitto: Mosquitto) -> Iterator[PlugTestSink]:
    s = PlugTestSink(mosquitto.url())
    yield s
    s.close()


@pytest.fixture
def plug(mosquitto: Mosquitto, gen: int) -> Iterator[PlugSimulator]:
    sim = PlugSimulator(
        KIND[gen], PREFIX[gen], mosquitto.url(), profile="manual", tele_period_s=0.5, energy_wh=5000.0
    )
    sim.start()
    yield sim
    sim.stop()


def make(
    sink: PlugTestSink, gen: int, *, interlock: bool = False, enabled: bool = True, **options: Any
) -> ShellyAdapter:
    adapter = ShellyAdapter(
        "trotec-laser",
        {"prefix": PREFIX[gen], "gen": gen, **FAST, **options},
        sink,
        interlock=interlock,
        enabled=enabled,
    )
    sink.adapter = adapter
    return adapter


def test_registered_by_name() -> None:
    assert ADAPTERS["shelly"] is ShellyAdapter


def test_busy_then_idle_is_one_job(plug: PlugSimulator, sink: PlugTestSink, gen: int) -> None:
    adapter = make(sink, gen)
    with AdapterRunner(adapter) as runner:
        plug.set_load(15)
        sink.wait_for(lambda: sink.state == "idle", "idle at standby")
        plug.set_load(900)
        started = sink.wait_for(lambda: sink.events("job_started"), "job_started")
        plug.set_load(120)  # a pause inside the band
        sink.wait_for(lambda: sink.last_value("power_w") == 120, "the pause's power")
        runner.wait_polls(6)
        assert sink.state == "running" and not sink.events("job_finished")
        plug.set_load(10)
        finished = sink.wait_for(lambda: sink.events("job_finished"), "job_finished")
        assert sink.state == "idle"
        assert runner.errors == []
    assert finished[0]["job"].id == started[0]["job"].id
    assert finished[0]["detail"]["duration_s"] >= 1.0
    assert finished[0]["detail"]["energy_wh"] > 0
    assert adapter.malformed_count == 0


def test_energy_survives_a_counter_reset(plug: PlugSimulator, sink: PlugTestSink, gen: int) -> None:
    # Gen1 counts whole watt-minutes (1/60 Wh); Gen2 reports Wh with 3 decimals.
    tolerance = 1 / 60 + 0.002 if gen == 1 else 0.002
    adapter = make(sink, gen)
    with AdapterRunner(adapter):
        plug.set_load(3000)
        sink.wait_for(lambda: plug.energy_wh > 5000.3, "the plug to count")
        plug.set_load(0)
        before = sink.wait_for(
            lambda: (
                (v := sink.last_value("energy_wh")) is not None and abs(v - plug.energy_wh) < tolerance and v
            ),
            "energy before the reset",
        )
        plug.reboot()
        sink.wait_for(lambda: adapter.energy.resets == 1, "the reset to be seen")
        plug.set_load(2500)
        sink.wait_for(lambda: plug.energy_wh > 0.3, "the plug to count again")
        plug.set_load(0)
        after = sink.wait_for(
            lambda: (
                (v := sink.last_value("energy_wh")) is not None
                and abs(v - before - plug.energy_wh) < 2 * tolerance
                and v
            ),
            "energy after the reset = before + the new counter",
        )
    assert after > before > 5000
    energies = [t["energy_wh"] for t in sink.of("telemetry") if "energy_wh" in t]
    assert all(b >= a for a, b in itertools.pairwise(energies))


def test_interlock_switches_the_relay_with_confirmation(
    plug: PlugSimulator, sink: PlugTestSink, gen: int
) -> None:
    adapter = make(sink, gen, interlock=True, enabled=False)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: not plug.relay_on and adapter.relay_on is False, "started disabled")
        adapter.command("enable")
        assert plug.relay_on and adapter.enabled
        adapter.command("enable")  # unchanged state: still confirmed (Gen2 through Switch.GetStatus)
        adapter.command("disable")
        assert not plug.relay_on and not adapter.enabled
        assert sink.of("status")[-1]["enabled"] is False
    assert all(not retain for _, _, retain in sink.published)
    if gen == 2:
        sets = [json.loads(p) for t, p in plug.commands if t == f"{PREFIX[2]}/rpc"]
        switched = [r["params"]["on"] for r in sets if r["method"] == "Switch.Set"]
        assert switched == [False, True, True, False]
        assert all(r["src"] == f"{PREFIX[2]}/fablab-bridge" for r in sets)
    else:
        commands = [p for t, p in plug.commands if t.endswith("/relay/0/command")]
        assert commands == ["off", "on", "on", "off"]


def test_plug_offline_through_its_lwt(plug: PlugSimulator, sink: PlugTestSink, gen: int) -> None:
    adapter = make(sink, gen, interlock=True, enabled=True)
    with AdapterRunner(adapter):
        sink.wait_for(lambda: adapter.enabled and sink.state == "idle", "enabled and idle")
        plug.go_offline()
        sink.wait_for(lambda: sink.state == "offline", "offline")
        assert not adapter.enabled
        with pytest.raises(CommandError) as err:
            adapter.command("enable")
        assert err.value.code == "device_error"
        plug.go_online()
        sink.wait_for(lambda: sink.state == "idle" and adapter.enabled, "back, relay on")


@pytest.mark.parametrize(
    ("gen_", "suffix", "payload"),
    [
        (2, "status/switch:0", b"garbage"),
        (2, "status/switch:0", json.dumps({"id": 0, "apower": 3}).encode()),  # full status without output
        (2, "status/switch:0", json.dumps({"id": 0, "output": "yes"}).encode()),
        (
            2,
            "events/rpc",
            json.dumps({"method": "NotifyStatus", "params": {"switch:0": {"apower": "x"}}}).encode(),
        ),
        (2, "events/rpc", json.dumps({"method": "NotifyStatus", "params": []}).encode()),
        (
            2,
            "events/rpc",
            json.dumps({"method": "NotifyStatus", "params": {"switch:0": {"aenergy": 5}}}).encode(),
        ),
        (2, "online", b"perhaps"),
        (1, "relay/0", b"half"),
        (1, "relay/0/power", b"NaN"),
        (1, "relay/0/energy", b"-5"),
        (1, "online", b""),
    ],
)
def test_malformed_payloads_are_counted_and_harmless(
    mosquitto: Mosquitto, sink: PlugTestSink, gen_: int, suffix: str, payload: bytes
) -> None:
    sim = PlugSimulator(KIND[gen_], PREFIX[gen_], mosquitto.url(), profile="manual", tele_period_s=0.5)
    sim.start()
    observer = Observer(mosquitto.url(), [])
    try:
        adapter = make(sink, gen_)
        with AdapterRunner(adapter) as runner:
            sink.wait_for(lambda: sink.state == "idle", "idle")
            observer.publish(f"{PREFIX[gen_]}/{suffix}", payload)
            sink.wait_for(lambda: adapter.malformed_count >= 1, "the malformed message to be counted")
            sim.set_load(900)
            sink.wait_for(lambda: sink.events("job_started"), "a job after the bad message")
            assert runner.errors == []
        assert adapter.malformed_count == 1
    finally:
        observer.close()
        sim.stop()


def test_gen2_deltas_are_overlaid_on_the_last_full_status(mosquitto: Mosquitto, sink: PlugTestSink) -> None:
    """A hand-written device: exact payloads from the Gen2 docs, no simulator."""
    p = PREFIX[2]
    device = Observer(mosquitto.url(), [f"{p}/rpc"])
    try:
        device.publish(f"{p}/online", "true", retain=True)
        adapter = make(sink, 2)
        with AdapterRunner(adapter):
            device.wait_for(lambda: device.on(f"{p}/rpc"), "the adapter's Switch.GetStatus")
            request = json.loads(device.on(f"{p}/rpc")[0])
            assert request["method"] == "Switch.GetStatus" and request["params"] == {"id": 0}
            full = {
                "id": 0,
                "source": "init",
                "output": True,
                "apower": 12.3,
                "voltage": 230.1,
                "current": 0.07,
                "freq": 50,
                "aenergy": {"total": 1234.5, "by_minute": [0, 0, 0], "minute_ts": 1700000000},
                "temperature": {"tC": 41.2, "tF": 106.2},
            }
            reply = {"id": request["id"], "src": p, "dst": request["src"], "result": full}
            device.publish(f"{request['src']}/rpc", json.dumps(reply))
            sink.wait_for(lambda: adapter.relay_on is True, "the relay from the RPC reply")
            sink.wait_for(lambda: sink.last_value("energy_wh") == 1234.5, "the energy from the reply")
            delta = {
                "src": p,
                "dst": f"{p}/events",
                "method": "NotifyStatus",
                "params": {"ts": 1700000001.5, "switch:0": {"id": 0, "apower": 845.0, "current": 3.9}},
            }
            device.publish(f"{p}/events/rpc", json.dumps(delta))
            values = sink.wait_for(
                lambda: [t for t in sink.of("telemetry") if t.get("power_w") == 845.0], "the delta's power"
            )[0]
            # Keys the delta did not carry come from the last full status.
            assert values == {"power_w": 845.0, "current_a": 3.9, "voltage_v": 230.1, "energy_wh": 1234.5}
            energy_delta = {
                "method": "NotifyStatus",
                "params": {"switch:0": {"id": 0, "aenergy": {"total": 1240.0}}},
            }
            device.publish(f"{p}/events/rpc", json.dumps(energy_delta))
            sink.wait_for(lambda: sink.last_value("energy_wh") == 1240.0, "the nested aenergy delta")
            assert sink.last_value("power_w") == 845.0
            off = {"method": "NotifyStatus", "params": {"switch:0": {"id": 0, "output": False, "apower": 0}}}
            device.publish(f"{p}/events/rpc", json.dumps(off))
            sink.wait_for(lambda: adapter.relay_on is False, "the relay off from a delta")
            event = {
                "method": "NotifyEvent",
                "params": {"events": [{"component": "input:0", "event": "single_push"}]},
            }
            device.publish(f"{p}/events/rpc", json.dumps(event))
            device.publish(f"{p}/online", "false", retain=True)
            sink.wait_for(lambda: sink.state == "offline", "offline")
        assert adapter.malformed_count == 0
    finally:
        device.close()


def test_a_gen2_plug_that_does_not_switch_is_not_acked_ok(mosquitto: Mosquitto, sink: PlugTestSink) -> None:
    p = PREFIX[2]
    device = Observer(mosquitto.url(), [f"{p}/rpc"])
    try:
        device.publish(f"{p}/online", "true", retain=True)
        adapter = make(sink, 2, interlock=True, enabled=False, confirm_timeout_s=1)
        with AdapterRunner(adapter):
            sink.wait_for(lambda: sink.state == "idle", "online")
            with pytest.raises(CommandError) as err:
                adapter.command("enable")
            assert err.value.code == "not_confirmed"
        methods = [json.loads(m)["method"] for m in device.on(f"{p}/rpc")]
        assert "Switch.Set" in methods
    finally:
        device.close()


def test_options() -> None:
    assert ShellyAdapter.validate_options({"prefix": "shellypro1pm-1", "gen": 2}) == []
    problems = ShellyAdapter.validate_options({"prefix": "x/#", "gen": 3, "rpc_src": "a/+", "off_w": 500})
    assert len(problems) == 4, problems
    for action in ("pause", "resume", "cancel"):
        with pytest.raises(CommandError) as err:
            ShellyAdapter("m", {"prefix": "p"}, SimpleNamespace()).command(action)  # type: ignore[arg-type]
        assert err.value.code == "unsupported"


def test_end_to_end_through_the_bridge_and_a_restart(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    lab, machine, p = "bxl-south", "trotec-laser", PREFIX[2]
    sim = PlugSimulator("shelly", p, mosquitto.url(), profile="manual", tele_period_s=0.5, relay_on=False)
    sim.start()
    machines = [
        {
            "lab": lab,
            "machine": machine,
            "adapter": "shelly",
            "interlock": True,
            "options": {"prefix": p, "gen": 2, **FAST},
        }
    ]
    config = load(write_config(tmp_path / "bridge.toml", mosquitto, machines))

    def status() -> protocol.Status | None:
        return collector.last(protocol.STATUS, lab, machine)

    def command(action: str) -> protocol.CommandAck:
        cid = str(uuid.uuid4())
        now = protocol.now_ms()
        body = {"v": 1, "id": cid, "action": action, "ts": now, "expires": now + 60_000, "booking": None}
        collector.publish(protocol.topic_cmd(lab, machine), body)
        return wait_until(
            lambda: next(
                (a for _, a in collector.of_kind(protocol.CMD_ACK, lab, machine) if a.id == cid), None
            ),
            what=f"the ack of {action}",
        )

    def switch_sets(since: int) -> list[bool]:
        rpcs = [json.loads(m) for t, m in sim.commands[since:] if t == f"{p}/rpc"]
        return [r["params"]["on"] for r in rpcs if r["method"] == "Switch.Set"]

    try:
        bridge = Bridge(config)
        bridge.start()
        try:
            wait_until(lambda: (s := status()) and s.state == "idle" and not s.enabled, what="idle, disabled")
            assert command("enable").ok and sim.relay_on
            sim.set_load(700)
            wait_until(lambda: (s := status()) and s.state == "running" and s.enabled, what="running")
            sim.set_load(20)
            wait_until(lambda: (s := status()) and s.state == "idle", what="idle again")

            # Events travel through the spool, the status directly: the idle
            # status may arrive before the job_finished event does.
            def events() -> list[str]:
                return [e.type for _, e in collector.of_kind(protocol.EVENT, lab, machine)]

            wait_until(lambda: "job_finished" in events(), what="job_finished")
            assert events().count("job_started") == 1 and events().count("job_finished") == 1
        finally:
            bridge.stop()
        # Restart with "enabled" remembered and the relay still on: nothing is switched.
        seen = len(sim.commands)
        bridge = Bridge(config)
        bridge.start()
        try:
            adapter = wait_until(lambda: bridge.machines[f"{lab}/{machine}"].adapter, what="the adapter")
            wait_until(
                lambda: adapter.relay_on is True and not adapter._restore_pending, what="the relay read"
            )
            assert adapter._restore_to is None and adapter.enabled
            wait_until(lambda: (s := status()) and s.enabled, what="status enabled after the restart")
            assert switch_sets(seen) == []
        finally:
            bridge.stop()
        assert sim.relay_on
    finally:
        sim.stop()
