"""Each adapter declares the commands it carries out, and the bridge publishes them in every status.

Through a real Mosquitto: a counter and power plugs (Tasmota, Shelly), with and without an
interlock. A plug has no job to pause; only its relay, the interlock, is a command.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_bridge import protocol
from firmware_bridge.adapters import ADAPTERS
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.firmware_bridge.conftest import Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto

LAB = "caps-lab"
COUNTER = {"interval_s": 0.05, "job_s": 1000}
#: No simulated plug answers: the plug stays offline, which must not hide what it can do.
MACHINES = [
    {"lab": LAB, "machine": "counter-free", "adapter": "counter", "options": COUNTER},
    {"lab": LAB, "machine": "counter-locked", "adapter": "counter", "interlock": True, "options": COUNTER},
    {
        "lab": LAB,
        "machine": "laser-tasmota",
        "adapter": "tasmota",
        "interlock": True,
        "options": {"topic": "tasmota_CAPS01"},
    },
    {
        "lab": LAB,
        "machine": "laser-shelly",
        "adapter": "shelly",
        "options": {"prefix": "shellyplusplugs-caps02"},
    },
]
EXPECTED = {
    "counter-free": ("pause", "resume", "cancel"),
    "counter-locked": ("enable", "disable", "pause", "resume", "cancel"),
    "laser-tasmota": ("enable", "disable"),
    "laser-shelly": (),
}


@pytest.fixture
def bridge(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Bridge]:
    b = Bridge(load(write_config(tmp_path / "bridge.toml", mosquitto, MACHINES)))
    b.start()
    assert b.transport.wait_connected(60)
    yield b
    b.stop()


def test_each_adapter_declares_its_capabilities_in_the_status(bridge: Bridge, collector: Collector) -> None:
    for machine, expected in EXPECTED.items():
        status = wait_until(
            lambda m=machine: collector.last(protocol.STATUS, LAB, m), what=f"a status of {machine}"
        )
        assert status.capabilities == expected, machine
    # Every status carries them, the offline plugs' too (they are the adapter's, not the moment's).
    statuses = collector.of_kind(protocol.STATUS, LAB)
    assert {s.state for _, s in statuses if _.machine == "laser-shelly"} == {"offline"}
    assert all(s.capabilities == EXPECTED[t.machine] for t, s in statuses)


def test_a_plug_answers_pause_unsupported_and_a_counter_does_not(
    bridge: Bridge, collector: Collector
) -> None:
    """What a status declares is what the bridge does: a listed action is never ``unsupported``."""
    wait_until(
        lambda: (s := collector.last(protocol.STATUS, LAB, "counter-free")) and s.state == "running" and s,
        what="counter-free running",
    )
    wait_until(lambda: collector.last(protocol.STATUS, LAB, "laser-shelly"), what="a status of laser-shelly")
    answers = {}
    for machine in ("counter-free", "laser-shelly"):
        cid = str(uuid.uuid4())
        now = protocol.now_ms()
        collector.publish(
            protocol.topic_cmd(LAB, machine),
            {"v": 1, "id": cid, "action": "pause", "ts": now, "expires": now + 60_000, "booking": None},
        )
        answers[machine] = wait_until(
            lambda m=machine, c=cid: next(
                (a for _, a in collector.of_kind(protocol.CMD_ACK, LAB, m) if a.id == c), None
            ),
            what=f"ack of pause on {machine}",
        )
    assert answers["counter-free"].ok
    assert not answers["laser-shelly"].ok and answers["laser-shelly"].error.code == protocol.UNSUPPORTED


def test_every_adapter_declares_only_job_actions_and_the_shipped_ones_match_the_legacy_table() -> None:
    """The interlock's actions come from the configuration, never from the adapter class; an old
    bridge's adapters could do what the server's fallback table says they could."""
    for name, cls in ADAPTERS.items():
        assert set(cls.capabilities) <= set(protocol.JOB_ACTIONS), name
    for name, legacy in protocol.LEGACY_CAPABILITIES.items():
        assert ADAPTERS[name].capabilities == legacy, name
