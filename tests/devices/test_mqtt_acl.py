"""Per-device MQTT credentials, proven against a real Mosquitto.

``mqtt_sync`` writes the password and ACL files; a private broker loads
them; then each identity tries what it may and may not do. Under MQTT 5 a
refused publish comes back as PUBACK reason 135 and a refused subscription
as SUBACK reason 135, so "not allowed" is observed, not inferred.
"""

from __future__ import annotations

import io
import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from django.core.management import call_command
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.models import Bridge, MachineLink, PowerPlug
from devices.mqtt_auth import hash_password, set_bridge_password, set_plug_password
from firmware_bridge import protocol
from tests.factories import LabFactory, MachineFactory
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.django_db

WAIT = 30
NOT_AUTHORIZED = 135
ACCEPTED = (0, 16)  # success, and success with "no matching subscribers"


class Peer:
    """A small synchronous MQTT 5 client that reports reason codes."""

    def __init__(self, broker: Mosquitto, user: str | None, password: str | None) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connected = threading.Event()
        self.connect_rc: ReasonCode | None = None
        self.acks: dict[int, tuple[threading.Event, list]] = {}
        self.received: list[tuple[str, bytes]] = []
        self.got_message = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        # A session that outlives a reconnect: Mosquitto closes the connection
        # of a client whose publish it refuses, and paho reconnects at once.
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self.client.connect(broker.host, broker.port, properties=props)
        self.client.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"

    def _on_connect(self, client, userdata, flags, rc, properties):
        self.connect_rc = rc
        self.connected.set()

    def _slot(self, mid):
        return self.acks.setdefault(mid, (threading.Event(), []))

    def _on_ack(self, client, userdata, mid, rc, properties):
        event, box = self._slot(mid)
        box.append(rc.value)
        event.set()

    def _on_subscribe(self, client, userdata, mid, rcs, properties):
        event, box = self._slot(mid)
        box.extend(rc.value for rc in rcs)
        event.set()

    def _on_message(self, client, userdata, message):
        with self.got_message:
            self.received.append((message.topic, message.payload))
            self.got_message.notify_all()

    def _wait(self, mid) -> list[int]:
        event, box = self._slot(mid)
        assert event.wait(WAIT), "no acknowledgement"
        return box

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        info = self.client.publish(topic, payload, qos=1)
        return self._wait(info.mid)[0]

    def subscribe(self, topic: str) -> int:
        _rc, mid = self.client.subscribe(topic, qos=1)
        return self._wait(mid)[0]

    def wait_for(self, topic: str) -> bool:
        with self.got_message:
            return self.got_message.wait_for(lambda: any(t == topic for t, _ in self.received), timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def scene(tmp_path, settings):
    hub_password = "hub-" + uuid.uuid4().hex
    settings.MQTT_URL = f"mqtt://fablab-hub:{hub_password}@127.0.0.1:1"
    lab_a, lab_b = LabFactory(slug="lab-a"), LabFactory(slug="lab-b")
    machine_a = MachineFactory(lab=lab_a, slug="printer-a")
    machine_b = MachineFactory(lab=lab_b, slug="printer-b")
    bridge_a = Bridge.objects.create(slug="bridge-a", lab=lab_a)
    bridge_b = Bridge.objects.create(slug="bridge-b", lab=lab_b)
    MachineLink.objects.create(machine=machine_a, bridge=bridge_a, adapter="octoprint")
    MachineLink.objects.create(machine=machine_b, bridge=bridge_b, adapter="octoprint")
    plug_a = PowerPlug.objects.create(
        machine=machine_a, kind="tasmota", topic="plug_a", mqtt_username="plug-a"
    )
    plug_b = PowerPlug.objects.create(
        machine=machine_b, kind="shelly", topic="shelly-b", mqtt_username="plug-b"
    )
    passwords = {
        "bridge-a": set_bridge_password(bridge_a),
        "bridge-b": set_bridge_password(bridge_b),
        "plug-a": set_plug_password(plug_a),
        "plug-b": set_plug_password(plug_b),
    }
    pw_file, acl_file = tmp_path / "passwords", tmp_path / "acl"
    call_command("mqtt_sync", password_file=pw_file, acl_file=acl_file, stdout=io.StringIO())
    broker = Mosquitto(
        tmp_path / "broker",
        extra=f"allow_anonymous false\npassword_file {pw_file}\nacl_file {acl_file}",
    )
    broker.start()
    peers: list[Peer] = []

    def connect(user, password=None):
        peer = Peer(broker, user, password if password is not None else passwords.get(user, hub_password))
        peers.append(peer)
        return peer

    yield connect
    for peer in peers:
        peer.close()
    broker.stop()


def test_wrong_password_and_anonymous_are_refused(scene):
    assert scene("bridge-a", "not-the-password").connect_rc.is_failure
    assert scene(None).connect_rc.is_failure
    assert not scene("bridge-a").connect_rc.is_failure


def test_a_bridge_publishes_only_its_own_machines(scene):
    hub = scene("fablab-hub")
    assert hub.subscribe(protocol.filter_everything()) == 1  # granted QoS 1
    own = protocol.topic_telemetry("lab-a", "printer-a")
    foreign = protocol.topic_telemetry("lab-b", "printer-b")
    # Each refusal on a connection of its own (Mosquitto 2.0 closes it).
    for topic in (
        foreign,
        protocol.topic_status("lab-b", "printer-b"),
        protocol.topic_bridge_online("bridge-b"),
        protocol.topic_cmd("lab-a", "printer-a"),  # commands come from the hub
    ):
        assert scene("bridge-a").publish(topic) == NOT_AUTHORIZED, topic
    bridge = scene("bridge-a")
    assert bridge.publish(own) in ACCEPTED
    assert bridge.publish(protocol.topic_bridge_online("bridge-a")) in ACCEPTED
    assert hub.wait_for(own)
    assert hub.wait_for(protocol.topic_bridge_online("bridge-a"))
    assert foreign not in [t for t, _ in hub.received]


def test_a_bridge_reads_only_its_own_machines_commands(scene):
    # Mosquitto's ACL file checks "read" when it delivers, not when it
    # subscribes: a foreign subscription is granted but never receives anything.
    bridge = scene("bridge-a")
    for topic in (
        protocol.topic_cmd("lab-b", "printer-b"),
        protocol.filter_all_cmds(),
        protocol.topic_telemetry("lab-b", "printer-b"),
        protocol.topic_cmd("lab-a", "printer-a"),
    ):
        assert bridge.subscribe(topic) in (1, NOT_AUTHORIZED)
    hub = scene("fablab-hub")
    spy = scene("bridge-b")
    assert spy.subscribe(protocol.topic_telemetry("lab-a", "printer-a")) in (1, NOT_AUTHORIZED)
    assert hub.publish(protocol.topic_cmd("lab-b", "printer-b")) in ACCEPTED
    assert hub.publish(protocol.topic_cmd("lab-a", "printer-a")) in ACCEPTED
    assert scene("bridge-a").publish(protocol.topic_telemetry("lab-a", "printer-a")) in ACCEPTED
    assert bridge.wait_for(protocol.topic_cmd("lab-a", "printer-a"))
    # The messages above were sent in order by one broker: had the foreign ones
    # been delivered they would have arrived too. Wait for a marker to be sure.
    assert hub.publish(protocol.topic_cmd("lab-a", "printer-a"), b"marker") in ACCEPTED
    with bridge.got_message:
        assert bridge.got_message.wait_for(
            lambda: any(p == b"marker" for _, p in bridge.received), timeout=WAIT
        )
    assert {t for t, _ in bridge.received} == {protocol.topic_cmd("lab-a", "printer-a")}
    assert spy.received == []


def test_the_hub_cannot_impersonate_a_bridge(scene):
    assert scene("fablab-hub").publish(protocol.topic_status("lab-a", "printer-a")) == NOT_AUTHORIZED
    assert scene("fablab-hub").publish(protocol.topic_cmd("lab-a", "printer-a")) in ACCEPTED


def test_password_hash_format_is_mosquittos():
    value = hash_password("secret", salt=b"0123456789ab")
    kind, iterations, salt, digest = value.split("$")[1:]
    assert (kind, iterations) == ("7", "101")
    assert len(salt) == 16 and len(digest) == 88
    assert hash_password("secret", salt=b"0123456789ab") == value
    assert hash_password("other", salt=b"0123456789ab") != value


def test_acl_file_names_each_bridge_and_only_its_topics(scene, tmp_path):
    text = (tmp_path / "acl").read_text()
    block_a = text.split("user bridge-a\n")[1].split("\n\n")[0]
    assert "printer-b" not in block_a and "bridge-b" not in block_a
    assert f"topic read {protocol.topic_cmd('lab-a', 'printer-a')}" in block_a


def test_a_plug_uses_only_its_own_topics_and_its_bridge_drives_it(scene):
    # Listeners never publish a refused message: Mosquitto 2.0 closes the
    # connection of a client whose publish it refuses. Refusals are tried on
    # connections of their own.
    plug_a, bridge_a, bridge_b = scene("plug-a"), scene("bridge-a"), scene("bridge-b")
    assert bridge_a.subscribe("tele/plug_a/#") in (1, NOT_AUTHORIZED)
    assert bridge_b.subscribe("tele/plug_a/#") in (1, NOT_AUTHORIZED)
    assert bridge_b.subscribe(protocol.topic_cmd("lab-b", "printer-b")) == 1
    assert plug_a.subscribe("cmnd/plug_a/#") in (1, NOT_AUTHORIZED)
    for user, topic in [
        ("plug-a", "tele/other/SENSOR"),
        ("plug-a", "shelly-b/status/switch:0"),
        ("plug-a", protocol.topic_status("lab-a", "printer-a")),
        ("plug-b", "cmnd/plug_a/POWER"),
        ("bridge-b", "cmnd/plug_a/POWER"),
    ]:
        assert scene(user).publish(topic) == NOT_AUTHORIZED, (user, topic)
    assert scene("plug-b").publish("shelly-b/status/switch:0") in ACCEPTED
    assert scene("plug-a").publish("tele/plug_a/SENSOR") in ACCEPTED
    assert bridge_a.publish("cmnd/plug_a/POWER", b"OFF") in ACCEPTED
    assert bridge_a.wait_for("tele/plug_a/SENSOR")
    assert plug_a.wait_for("cmnd/plug_a/POWER")
    # bridge-b is subscribed to plug_a's telemetry, but may not read it: the
    # marker on its own command topic arrives, the plug's telemetry does not.
    assert scene("fablab-hub").publish(protocol.topic_cmd("lab-b", "printer-b"), b"marker") in ACCEPTED
    assert bridge_b.wait_for(protocol.topic_cmd("lab-b", "printer-b"))
    assert [t for t, _ in bridge_b.received] == [protocol.topic_cmd("lab-b", "printer-b")]
