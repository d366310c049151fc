"""Malformed and hostile messages never stop the hub; each is counted under its reason.

Hypothesis throws thousands of them at a running hub (bad JSON, wrong types,
topics that match the subscriptions but break the contract, payloads far over
16 KiB, machines and bridges that do not exist); afterwards one valid message
still lands, and the hub's counters match what was thrown.
"""

from __future__ import annotations

import collections
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.hub import UNKNOWN_BRIDGE, UNKNOWN_MACHINE, reason_of
from devices.models import MachineStatus
from devices.mqtt_names import MOSQUITTO_MAX_PACKET_SIZE
from firmware_bridge import protocol
from tests.devices.conftest import hub_thread, make_machine, new_sid, wait_until
from tests.factories import LabFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAB, MACHINE, BRIDGE = "bxl-centre", "prusa-1", "bridge-1"
KINDS = ("status", "telemetry", "event", "cmd/ack")
TOPIC_BUILDERS = {
    "status": protocol.topic_status,
    "telemetry": protocol.topic_telemetry,
    "event": protocol.topic_event,
    "cmd/ack": protocol.topic_cmd_ack,
}

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
#: A topic level that matches "+" in a subscription: no "/", no wildcards, and UTF-8 the broker
#: forwards (Mosquitto disconnects a client that publishes control characters or non-characters).
level = st.text(
    alphabet=st.characters(blacklist_characters="/+#", blacklist_categories=("Cc", "Cs", "Co", "Cn")),
    min_size=1,
    max_size=20,
)


def payload_wrong_types(kind: str):
    base = {
        "status": {
            "v": 1,
            "state": "idle",
            "enabled": True,
            "bridge": BRIDGE,
            "adapter": "octoprint",
            "ts": 1,
        },
        "telemetry": {"v": 1, "ts": 1, "sid": new_sid(), "seq": 1, "values": {"power_w": 1}},
        "event": {"v": 1, "ts": 1, "sid": new_sid(), "seq": 1, "type": "alarm"},
        "cmd/ack": {"v": 1, "id": "abc", "ok": True, "ts": 1},
    }[kind]
    return st.tuples(st.sampled_from(sorted(base)), junk).map(
        lambda kv: json.dumps({**base, kv[0]: kv[1]}).encode()
    )


@st.composite
def hostile(draw):
    """(topic, payload) that the hub must refuse."""
    kind = draw(st.sampled_from(KINDS))
    choice = draw(st.integers(0, 6))
    topic = TOPIC_BUILDERS[kind](LAB, MACHINE)
    if choice == 0:  # bytes that are not a JSON object
        payload = draw(st.binary(max_size=100) | st.text(max_size=50).map(str.encode))
    elif choice == 1:  # JSON, but the wrong shape or types
        payload = draw(payload_wrong_types(kind) | junk.map(lambda j: json.dumps(j).encode()))
    elif choice == 2:  # huge, yet small enough for the broker's max_packet_size to let through
        size = draw(st.integers(protocol.MAX_PAYLOAD_BYTES, MOSQUITTO_MAX_PACKET_SIZE - 1024))
        payload = b'{"v":1,"pad":"' + b"x" * size + b'"}'
    elif choice == 3:  # a machine that does not exist (valid everything else)
        topic = TOPIC_BUILDERS["telemetry"](LAB, f"ghost-{draw(st.integers(0, 10**6))}")
        payload = protocol.encode(protocol.Telemetry(ts=1, sid=new_sid(), seq=1, values={"power_w": 1}))
    elif choice == 4:  # a topic that matches the subscriptions but breaks the contract
        topic = f"{protocol.PREFIX}/{draw(level)}/{draw(level)}/{kind}"
        payload = draw(st.binary(max_size=30))
    elif choice == 5:  # a bridge that does not exist
        topic = protocol.topic_bridge_online(f"ghost-{draw(st.integers(0, 10**6))}")
        payload = protocol.WILL_PAYLOAD
    else:  # a status under the bridges' reserved level
        topic = f"{protocol.PREFIX}/{protocol.BRIDGES}/{BRIDGE}/{kind}"
        payload = draw(st.binary(max_size=30))
    return topic, payload


def expected_reason(topic: str, payload: bytes) -> str | None:
    """What the contract says about a message (None: valid, and for a machine or bridge that exists)."""
    try:
        parsed, _msg = protocol.decode(topic, payload)
    except protocol.ProtocolError as exc:
        return reason_of(exc)
    if parsed.kind == protocol.ONLINE:
        return None if parsed.machine == BRIDGE else UNKNOWN_BRIDGE
    return None if (parsed.lab, parsed.machine) == (LAB, MACHINE) else UNKNOWN_MACHINE


def test_thousands_of_hostile_messages_are_counted_and_the_hub_keeps_working(
    broker, influx, publisher, tmp_path
):
    lab = LabFactory(slug=LAB)
    machine = make_machine(lab, slug=MACHINE, bridge=BRIDGE)
    thrown: collections.Counter[str] = collections.Counter()

    with hub_thread(broker, influx, tmp_path) as hub:

        @settings(
            max_examples=60,
            suppress_health_check=[
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
                HealthCheck.too_slow,
            ],
        )
        @given(st.lists(hostile(), min_size=40, max_size=80))
        def throw(messages):
            for topic, payload in messages:
                reason = expected_reason(topic, payload)
                if reason is None:
                    continue  # hypothesis made a valid message by chance: not hostile
                publisher.publish(topic, payload, wait=False)
                thrown[reason] += 1

        throw()
        total = sum(thrown.values())
        assert total >= 2000, thrown
        wait_until(lambda: hub.hub_stats.get("malformed", 0) >= total, what=f"{total} refusals")

        # Still alive: a valid status and reading land in the database and InfluxDB.
        ts = protocol.now_ms()
        status = protocol.Status(state="running", enabled=True, bridge=BRIDGE, adapter="octoprint", ts=ts)
        publisher.message(status, LAB, MACHINE)
        publisher.message(
            protocol.Telemetry(ts=ts, sid=new_sid(), seq=0, values={"power_w": 42}), LAB, MACHINE
        )
        wait_until(
            lambda: influx.count('SELECT count("power_w") FROM "telemetry"') == 1, what="the valid point"
        )
        wait_until(
            lambda: MachineStatus.objects.filter(machine=machine, state="running").exists(),
            what="the valid status",
        )
        # Refused messages are acknowledged too (after the batch they belong to is written).
        wait_until(lambda: hub.hub_stats.get("acked", 0) >= total + 2, what="every message acknowledged")
        stats = hub.hub_stats

    assert stats["malformed_by_reason"] == dict(thrown)
    assert stats["malformed"] == total
    assert stats["received"] == total + 2
    assert stats["acked"] == stats["received"]
    assert set(thrown) >= {
        "bad_json",
        "invalid",
        "too_large",
        "unknown_machine",
        "bad_topic",
        "unknown_bridge",
    }
