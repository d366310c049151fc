"""The power-plug simulator speaks each plug's native topics and shapes, through a real Mosquitto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from firmware_bridge.simulators.plug import ClosedLaserProfile, PlugSimulator
from tests.support.mosquitto import Mosquitto
from tests.support.plug_sink import Observer

T = "tasmota_sim"
P2 = "shellyplus1pm-sim"
P1 = "shellies/shelly1pm-sim"


@pytest.fixture
def observer(mosquitto: Mosquitto) -> Iterator[Observer]:
    obs = Observer(mosquitto.url(), ["tele/#", "stat/#", f"{P2}/#", "bridge/#", "shellies/#"])
    yield obs
    obs.close()


def _json(payloads: list[bytes]) -> list[dict]:
    return [json.loads(p) for p in payloads]


def test_tasmota_topics_and_payloads(mosquitto: Mosquitto, observer: Observer) -> None:
    sim = PlugSimulator("tasmota", T, mosquitto.url(), profile="manual", tele_period_s=0.3, energy_wh=6294.0)
    sim.start()
    try:
        sim.set_load(850)
        sensors = observer.wait_for(
            lambda: [s for s in _json(observer.on(f"tele/{T}/SENSOR")) if s["ENERGY"]["Power"] == 850],
            "a SENSOR at 850 W",
        )
        energy = sensors[0]["ENERGY"]
        for key in (
            "TotalStartTime",
            "Total",
            "Yesterday",
            "Today",
            "Period",
            "Power",
            "ApparentPower",
            "ReactivePower",
            "Factor",
            "Voltage",
            "Current",
        ):
            assert key in energy
        assert energy["Total"] == pytest.approx(6.294, abs=0.002)  # kWh, 3 decimals
        assert energy["Current"] == pytest.approx(850 / (energy["Voltage"] * energy["Factor"]), rel=0.02)
        assert len(sensors[0]["Time"]) == 19  # local time without a zone
        states = observer.wait_for(lambda: _json(observer.on(f"tele/{T}/STATE")), "a STATE")
        assert states[-1]["POWER"] == "ON" and "UptimeSec" in states[-1]
        assert observer.on(f"tele/{T}/LWT")[0] == b"Online"

        observer.publish(f"cmnd/{T}/POWER", "")
        observer.wait_for(lambda: b"ON" in observer.on(f"stat/{T}/POWER"), "the POWER query's answer")
        assert {"POWER": "ON"} in _json(observer.on(f"stat/{T}/RESULT"))
        observer.publish(f"cmnd/{T}/POWER", "OFF")
        observer.wait_for(lambda: b"OFF" in observer.on(f"stat/{T}/POWER"), "OFF confirmed")
        assert not sim.relay_on and sim.power_w == 0
        observer.wait_for(
            lambda: any(s["ENERGY"]["Power"] == 0 for s in _json(observer.on(f"tele/{T}/SENSOR"))),
            "the load cut by the relay",
        )
        observer.publish(f"cmnd/{T}/Status", "10")
        status = observer.wait_for(lambda: _json(observer.on(f"stat/{T}/STATUS10")), "STATUS10")[0]
        assert status["StatusSNS"]["ENERGY"]["Power"] == 0
        observer.publish(f"cmnd/{T}/POWER", "TOGGLE")
        observer.wait_for(lambda: sim.relay_on, "TOGGLE")
        observer.publish(f"cmnd/{T}/Bogus", "1")
        observer.wait_for(lambda: {"Command": "Unknown"} in _json(observer.on(f"stat/{T}/RESULT")), "unknown")
    finally:
        sim.stop()
    # The Last Will stays retained for whoever subscribes later.
    late = Observer(mosquitto.url(), [f"tele/{T}/LWT"], client_id="late")
    try:
        late.wait_for(lambda: late.messages, "the retained LWT")
        assert late.messages[-1][1:] == (b"Offline", True)
    finally:
        late.close()


def test_shelly_gen2_status_notifications_and_rpc(mosquitto: Mosquitto, observer: Observer) -> None:
    sim = PlugSimulator("shelly", P2, mosquitto.url(), profile="manual", tele_period_s=0.3, energy_wh=1234.5)
    sim.start()
    try:
        full = observer.wait_for(lambda: _json(observer.on(f"{P2}/status/switch:0")), "a full status")[0]
        assert {"id", "source", "output", "apower", "voltage", "current", "aenergy", "temperature"} <= set(
            full
        )
        assert full["aenergy"]["total"] == pytest.approx(1234.5, abs=0.01)  # Wh
        sim.set_load(640)
        notes = observer.wait_for(
            lambda: [
                n
                for n in _json(observer.on(f"{P2}/events/rpc"))
                if n["params"]["switch:0"].get("apower") == 640
            ],
            "a NotifyStatus with the new power",
        )
        assert notes[0]["method"] == "NotifyStatus" and notes[0]["src"] == P2
        assert "output" not in notes[0]["params"]["switch:0"]  # only changed keys
        assert observer.on(f"{P2}/online")[0] == b"true"

        request = {"id": 7, "src": "bridge/x", "method": "Switch.Set", "params": {"id": 0, "on": False}}
        observer.publish(f"{P2}/rpc", json.dumps(request))
        reply = observer.wait_for(lambda: _json(observer.on("bridge/x/rpc")), "the RPC reply")[0]
        assert reply == {"id": 7, "src": P2, "dst": "bridge/x", "result": {"was_on": True}}
        assert not sim.relay_on
        observer.wait_for(
            lambda: any(s["output"] is False for s in _json(observer.on(f"{P2}/status/switch:0"))),
            "output false",
        )
        observer.publish(
            f"{P2}/rpc",
            json.dumps({"id": 8, "src": "bridge/x", "method": "Switch.GetStatus", "params": {"id": 0}}),
        )
        observer.publish(f"{P2}/rpc", json.dumps({"id": 9, "src": "bridge/x", "method": "Nope.Nope"}))
        replies = observer.wait_for(
            lambda: len(observer.on("bridge/x/rpc")) >= 3 and _json(observer.on("bridge/x/rpc")),
            "two more replies",
        )
        by_id = {r["id"]: r for r in replies}
        assert by_id[8]["result"]["output"] is False and by_id[8]["result"]["apower"] == 0
        assert by_id[9]["error"]["code"] == 404
        sim.reboot()
        observer.wait_for(lambda: b"false" in observer.on(f"{P2}/online"), "the LWT on reboot")
        observer.wait_for(lambda: observer.on(f"{P2}/online")[-1] == b"true", "online again")
        assert sim.energy_wh < 1.0  # the counter was reset
    finally:
        sim.stop()


def test_shelly_gen1_topics(mosquitto: Mosquitto, observer: Observer) -> None:
    sim = PlugSimulator(
        "shelly-gen1", P1, mosquitto.url(), profile="manual", tele_period_s=0.3, energy_wh=100.0
    )
    sim.start()
    try:
        sim.set_load(300)
        observer.wait_for(lambda: b"300.00" in observer.on(f"{P1}/relay/0/power"), "the power in W")
        energy = observer.wait_for(lambda: observer.on(f"{P1}/relay/0/energy"), "the energy")
        assert int(energy[0]) == pytest.approx(6000, abs=2)  # watt-minutes: 100 Wh x 60
        observer.wait_for(lambda: b"on" in observer.on(f"{P1}/relay/0"), "the relay state")
        observer.publish(f"{P1}/relay/0/command", "off")
        observer.wait_for(lambda: observer.on(f"{P1}/relay/0")[-1] == b"off", "relay off")
        assert observer.on(f"{P1}/online")[0] == b"true"
    finally:
        sim.stop()


def test_energy_is_integrated_from_the_power_drawn(mosquitto: Mosquitto) -> None:
    sim = PlugSimulator("tasmota", T, mosquitto.url(), profile="manual", tele_period_s=0.2)
    sim.start()
    try:
        t0 = time.monotonic()
        sim.set_load(3600.0)  # 1 Wh per second
        deadline = time.monotonic() + 30
        while sim.energy_wh < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        sim.set_load(0.0)
        elapsed = time.monotonic() - t0
        counted = sim.energy_wh
        assert 0.5 <= counted <= elapsed + 0.01
        time.sleep(0.3)
        assert sim.energy_wh == counted  # no load, no energy
    finally:
        sim.stop()


def test_closed_laser_profile_is_a_realistic_job_cycle() -> None:
    profile = ClosedLaserProfile(seed=42)
    samples = [(t, profile(float(t)), profile.phase) for t in range(0, 4 * 3600)]
    phases = {name for _, _, name in samples}
    assert {"standby", "exhaust", "cutting", "pause", "run-on"} <= phases
    for _, watts, name in samples:
        if name == "standby":
            assert 13 <= watts <= 17
        elif name == "cutting":
            assert 570 <= watts <= 1250
        else:
            assert 115 <= watts <= 125
    # Cuts last minutes: measure each run of "cutting".
    runs, length = [], 0
    for _, _, name in samples:
        if name == "cutting":
            length += 1
        elif length:
            runs.append(length)
            length = 0
    assert runs and all(55 <= r <= 305 for r in runs)
    # speed compresses time: at speed 60 four hours of profile pass in four minutes.
    fast = ClosedLaserProfile(seed=42, speed=60)
    fast_phases = []
    for t in range(0, 4 * 3600, 60):
        fast(t / 60)
        fast_phases.append(fast.phase)
    assert fast_phases == [name for _, _, name in samples[::60]]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        PlugSimulator("sonoff", "x", "mqtt://127.0.0.1:1883")
    with pytest.raises(ValueError, match="mqtt://"):
        PlugSimulator("tasmota", "x", "http://127.0.0.1")
    with pytest.raises(ValueError, match="profile"):
        PlugSimulator("tasmota", "x", "mqtt://127.0.0.1:1883", profile="disco")
