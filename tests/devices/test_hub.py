"""The hub end to end: MQTT on a private Mosquitto -> database and a private InfluxDB."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices import commands, machines, readings
from devices import live as board_live
from devices.hub import Hub
from devices.models import Alert, Bridge, Command, MachineStatus, ProcessedEvent, StateChange, UsageSession
from devices.scheduler import Scheduler
from firmware_bridge import protocol
from tests.devices.conftest import WAIT_S, Publisher, hub_thread, make_machine, new_sid, wait_until
from tests.factories import LabFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000


def status(
    state: str, ts: int, *, job: protocol.Job | None = None, error=None, bridge="bridge-1"
) -> protocol.Status:
    return protocol.Status(
        state=state, enabled=True, bridge=bridge, adapter="octoprint", ts=ts, job=job, error=error
    )


def live(machine) -> MachineStatus | None:
    return MachineStatus.objects.filter(machine=machine).first()


def test_the_hub_subscribes_plain_and_shared_as_the_contract_says(broker, influx, tmp_path):
    hub = Hub(mqtt_url=broker.url(), store=None, spool=None, client_id="x")  # type: ignore[arg-type]
    subs = hub.subscriptions()
    plain = [protocol.filter_all_status(), protocol.filter_all_online(), protocol.filter_all_cmd_acks()]
    assert subs[:3] == plain
    assert subs[3:] == [
        protocol.shared("hub", protocol.filter_all_telemetry()),
        protocol.shared("hub", protocol.filter_all_events()),
    ]
    assert hub.receive_maximum >= 4 * hub.batch_size


def test_status_telemetry_and_events_land_in_the_database_and_influxdb(broker, influx, publisher, tmp_path):
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="prusa-1")
    sid = new_sid()
    job = protocol.Job(id="j1", name="benchy.gcode", started_ts=T0, progress_pct=0.0)
    with hub_thread(broker, influx, tmp_path) as hub:
        publisher.message(status("idle", T0), "bxl-centre", "prusa-1")
        wait_until(lambda: live(machine) and live(machine).state == "idle", what="idle")
        publisher.message(status("running", T0 + 1000, job=job), "bxl-centre", "prusa-1")
        for i in range(5):
            values = {"temp_nozzle_c": 200 + i, "energy_wh": 100.0 + i * 2.5}
            publisher.message(
                protocol.Telemetry(ts=T0 + 2000 + i * 1000, sid=sid, seq=i, values=values),
                "bxl-centre",
                "prusa-1",
            )
        wait_until(lambda: live(machine).last_reading.get("energy_wh") == 110.0, what="readings")
        publisher.message(
            protocol.Event(ts=T0 + 7000, sid=sid, seq=5, type="job_finished", job=job),
            "bxl-centre",
            "prusa-1",
        )
        wait_until(lambda: ProcessedEvent.objects.filter(machine=machine).exists(), what="event")
        publisher.message(status("idle", T0 + 8000), "bxl-centre", "prusa-1")
        wait_until(
            lambda: live(machine).state == "idle" and live(machine).status_ts == T0 + 8000, what="idle again"
        )
        # An older retained status replayed later changes nothing (newest ts wins).
        publisher.message(status("running", T0 + 500, job=job), "bxl-centre", "prusa-1")
        wait_until(lambda: hub.hub_stats.get("status", 0) >= 4, what="the replay")
        wait_until(lambda: influx.count('SELECT count("temp_nozzle_c") FROM "telemetry"') == 5, what="points")

    st = live(machine)
    assert st.state == "idle" and st.online and st.status_ts == T0 + 8000
    assert st.since == machines.ms_to_dt(T0 + 8000)
    assert st.last_reading_at == machines.ms_to_dt(T0 + 6000)
    assert [(c.previous_state, c.state) for c in StateChange.objects.filter(machine=machine)] == [
        ("", "idle"),
        ("idle", "running"),
        ("running", "idle"),
    ]
    session = UsageSession.objects.get(machine=machine)
    assert session.started_at == machines.ms_to_dt(T0)
    assert session.ended_at == machines.ms_to_dt(T0 + 8000)
    assert (session.job_name, session.outcome) == ("benchy.gcode", "finished")
    assert session.energy_wh == pytest.approx(10.0)

    rows = influx.query('SELECT * FROM "telemetry" ORDER BY time')[0]
    cols = rows["columns"]
    first = dict(zip(cols, rows["values"][0], strict=True))
    assert first["time"] == T0 + 2000
    assert (first["lab"], first["machine"], first["machine_type"], first["adapter"]) == (
        "bxl-centre",
        "prusa-1",
        "3d-printer",
        "octoprint",
    )
    assert first["temp_nozzle_c"] == 200
    states = influx.query('SELECT "state" FROM "machine_state" ORDER BY time')[0]["values"]
    assert [s for _t, s in states] == ["idle", "running", "running", "idle"]
    assert hub.hub_stats.get("malformed", 0) == 0


def test_alerts_are_raised_and_cleared(broker, influx, publisher, tmp_path):
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="laser-1", interval=1)
    sid = new_sid()

    def open_alerts():
        return set(
            Alert.objects.filter(machine=machine, cleared_at__isnull=True).values_list("kind", flat=True)
        )

    now = protocol.now_ms()
    with hub_thread(broker, influx, tmp_path):
        publisher.message(
            status("error", now, error=protocol.MachineError(code="alarm_1", message="Hard limit")),
            "bxl-centre",
            "laser-1",
        )
        wait_until(lambda: "error" in open_alerts(), what="error alert")
        assert Alert.objects.get(machine=machine, kind="error").message == "alarm_1: Hard limit"
        publisher.message(status("idle", now + 1), "bxl-centre", "laser-1")
        wait_until(lambda: "error" not in open_alerts(), what="error cleared")
        # Silent: online, no telemetry for more than 3 x 1 s (checked by the scheduler, not the hub).
        scheduler = Scheduler()

        def silent_raised():
            scheduler.silent(timezone.now())
            return "silent" in open_alerts()

        wait_until(silent_raised, what="silent alert")
        publisher.message(
            protocol.Telemetry(ts=protocol.now_ms(), sid=sid, seq=0, values={"power_w": 3}),
            "bxl-centre",
            "laser-1",
        )
        wait_until(lambda: "silent" not in open_alerts(), what="silent cleared")
        publisher.message(
            protocol.Event(ts=now + 2, sid=sid, seq=1, type="job_failed"), "bxl-centre", "laser-1"
        )
        wait_until(lambda: "job_failed" in open_alerts(), what="job failed alert")
        # The same event again (a replay) is applied once.
        publisher.message(
            protocol.Event(ts=now + 2, sid=sid, seq=1, type="job_failed"), "bxl-centre", "laser-1"
        )
        publisher.message(status("running", now + 3), "bxl-centre", "laser-1")
        wait_until(lambda: "job_failed" not in open_alerts(), what="job failed cleared by the next job")
        # The bridge's Last Will: every machine of the bridge goes offline, with an alert.
        publisher.publish(protocol.topic_bridge_online("bridge-1"), protocol.WILL_PAYLOAD, retain=True)
        wait_until(lambda: "offline" in open_alerts(), what="offline alert")
        st = live(machine)
        assert st.state == "offline" and not st.online
        assert not Bridge.objects.get(slug="bridge-1").online
        assert UsageSession.objects.get(machine=machine).outcome == "interrupted"
        publisher.message(status("idle", protocol.now_ms()), "bxl-centre", "laser-1")
        wait_until(lambda: "offline" not in open_alerts(), what="offline cleared")
    assert ProcessedEvent.objects.filter(machine=machine).count() == 1
    assert Alert.objects.filter(machine=machine, kind="job_failed").count() == 1


def test_every_change_is_pushed_to_the_channel_layer(broker, influx, publisher, tmp_path, monkeypatch):
    lab = LabFactory(slug="bxl-centre")
    make_machine(lab, slug="prusa-1")
    pushed = []
    monkeypatch.setattr(
        board_live,
        "push_status",
        lambda st, ts=None, alerts=None: pushed.append((st.machine.slug, st.state, ts)),
    )
    with hub_thread(broker, influx, tmp_path):
        publisher.message(status("idle", T0), "bxl-centre", "prusa-1")
        publisher.message(status("running", T0 + 1), "bxl-centre", "prusa-1")
        wait_until(lambda: ("prusa-1", "running", T0 + 1) in pushed, what="the running frame")
    assert ("prusa-1", "idle", T0) in pushed


def test_commands_are_published_audited_and_acked(broker, influx, publisher, tmp_path, settings):
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="prusa-1")
    user = UserFactory()
    settings.MQTT_URL = broker.url()
    got = []
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bridge-sub", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(protocol.topic_cmd("bxl-centre", "prusa-1"), qos=1)
    sub.loop_start()
    time.sleep(0.5)
    try:
        with hub_thread(broker, influx, tmp_path):
            cmd = commands.issue_command(machine=machine, action="pause", issued_by=user)
            assert cmd.result == "sent" and cmd.issued_by == user
            assert cmd.expires_at - cmd.issued_at == timedelta(seconds=commands.COMMAND_TTL_S)
            wait_until(lambda: got, what="the command on MQTT")
            sent = protocol.decode_command(got[0].payload)
            assert (sent.id, sent.action) == (str(cmd.id), "pause")
            assert sent.expires == machines.dt_to_ms(cmd.expires_at)
            # The broker keeps it for the rest of its lifetime (whole seconds, rounded up).
            assert 0 < got[0].properties.MessageExpiryInterval <= commands.COMMAND_TTL_S
            publisher.message(
                protocol.CommandAck(id=sent.id, ok=True, ts=protocol.now_ms()), "bxl-centre", "prusa-1"
            )
            wait_until(lambda: Command.objects.get(pk=cmd.pk).result == "ok", what="ok")
            cmd2 = commands.issue_command(machine=machine, action="cancel", issued_by=user)
            wait_until(lambda: len(got) == 2, what="second command")
            publisher.message(
                protocol.CommandAck(
                    id=str(cmd2.id),
                    ok=False,
                    ts=protocol.now_ms(),
                    error=protocol.AckError("invalid_state", "not running"),
                ),
                "bxl-centre",
                "prusa-1",
            )
            wait_until(lambda: Command.objects.get(pk=cmd2.pk).result == "failed", what="failed")
            assert Command.objects.get(pk=cmd2.pk).error_message == "not running"
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_a_command_is_written_without_any_broker(settings):
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="prusa-1")
    settings.MQTT_URL = "mqtt://127.0.0.1:1"  # the web process never connects: the hub publishes
    cmd = commands.issue_command(machine=machine, action="pause", issued_by=UserFactory())
    assert (cmd.state, cmd.result) == ("pending", "sent")


def test_unanswered_commands_become_no_answer():
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="prusa-1")
    past = timezone.now() - timedelta(minutes=5)
    cmd = Command.objects.create(
        machine=machine,
        action="pause",
        issued_by=UserFactory(),
        issued_at=past,
        expires_at=past,
        state=Command.State.PUBLISHED,
    )
    assert commands.expire_commands() == 1
    assert commands.expire_commands() == 0
    assert Command.objects.get(pk=cmd.pk).result == "no_answer"


def test_the_receive_window_holds_a_whole_write_batch(broker):
    """Measured: Mosquitto sends an MQTT 5 client as many unacked QoS 1 messages as its Receive Maximum.

    The hub acknowledges only after a batch is written, so its window must hold
    the batches in flight or the broker stops sending (a stall, not a loss).
    """
    window = 3000
    received = []
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="window", protocol=mqtt.MQTTv5, manual_ack=True
    )
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = window
    props.SessionExpiryInterval = 600
    client.on_message = lambda c, u, m: received.append(m.mid)
    client.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
    client.loop_start()
    client.subscribe(protocol.filter_all_telemetry(), qos=1)
    time.sleep(0.5)
    pub = Publisher(broker)
    payload = json.dumps({"v": 1})
    for _ in range(window + 500):
        pub.publish(protocol.topic_telemetry("lab", "m"), payload, wait=False)
    wait_until(lambda: len(received) >= window, what="a full window")
    time.sleep(1.0)
    assert len(received) == window  # and not one more until something is acked
    for mid in received[:100]:
        client.ack(mid, 1)
    wait_until(lambda: len(received) >= window + 100, timeout=WAIT_S, what="more after acks")
    pub.close()
    client.disconnect()
    client.loop_stop()


def test_silence_is_judged_per_machine_interval():
    lab = LabFactory(slug="bxl-centre")
    printer = make_machine(lab, slug="prusa-1", interval=10)
    plug = make_machine(lab, slug="plug-1", adapter="tasmota", interval=300)
    now = timezone.now()
    for machine in (printer, plug):
        MachineStatus.objects.create(
            machine=machine, state="idle", online=True, since=now, last_reading_at=now - timedelta(seconds=60)
        )
    index = machines.MachineIndex()
    index.reload()
    assert readings.check_silent(index, now) == 1  # 60 s > 3 x 10 s, but < 3 x 300 s
    assert readings.check_silent(index, now) == 0  # one open alert per kind, however often it runs
    assert list(Alert.objects.filter(cleared_at__isnull=True).values_list("machine__slug", "kind")) == [
        ("prusa-1", "silent")
    ]
    assert readings.check_silent(index, now + timedelta(seconds=901)) == 1  # the plug, much later


def test_two_hubs_split_the_streams_and_apply_each_status_once(broker, influx, publisher, tmp_path):
    lab = LabFactory(slug="bxl-centre")
    machine = make_machine(lab, slug="prusa-1")
    sid = new_sid()
    with hub_thread(broker, influx, tmp_path) as hub_a, hub_thread(broker, influx, tmp_path) as hub_b:
        for i in range(200):
            publisher.message(
                protocol.Telemetry(ts=T0 + i, sid=sid, seq=i, values={"power_w": i}),
                "bxl-centre",
                "prusa-1",
                wait=False,
            )
        for i, state in enumerate(["idle", "running", "paused", "running", "idle"]):
            publisher.message(status(state, T0 + 1000 + i), "bxl-centre", "prusa-1")
        wait_until(lambda: influx.count('SELECT count("power_w") FROM "telemetry"') == 200, what="200 points")
        wait_until(
            lambda: hub_a.hub_stats.get("status", 0) == 5 and hub_b.hub_stats.get("status", 0) == 5,
            what="every hub sees every status",
        )
        a, b = hub_a.hub_stats.get("telemetry", 0), hub_b.hub_stats.get("telemetry", 0)
    assert a + b == 200 and a > 0 and b > 0  # shared: each message to one hub
    assert list(StateChange.objects.filter(machine=machine).values_list("state", flat=True)) == [
        "idle", "running", "paused", "running", "idle",
    ]  # fmt: skip
    assert UsageSession.objects.filter(machine=machine).count() == 1


def test_fast_properties_decode_like_paho():
    from paho.mqtt.properties import Properties

    from devices.mqtt_client import FastProperties

    sent = Properties(PacketTypes.PUBLISH)
    sent.MessageExpiryInterval = 30
    sent.ContentType = "application/json"
    sent.UserProperty = [("booking", "42"), ("trace", "x")]
    sent.PayloadFormatIndicator = 1
    raw = sent.pack()
    decoded = {}
    for cls in (Properties, FastProperties):
        props = cls(PacketTypes.PUBLISH)
        props.unpack(raw)
        props.unpack(raw)  # unpack clears first: nothing doubles up
        decoded[cls] = props.json()
    assert decoded[FastProperties] == decoded[Properties]
    assert decoded[Properties]["UserProperty"] == [("booking", "42"), ("trace", "x")]
    empty = FastProperties(PacketTypes.PUBLISH)
    empty.unpack(Properties(PacketTypes.PUBLISH).pack())
    assert empty.json() == {}


def _publish_packet(
    topic: bytes, payload: bytes, *, qos: int, mid: int, props: bytes = b"\x00", dup=False, retain=False
):
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + props + payload
    length, remaining = len(body), b""
    while True:
        byte, length = length % 128, length // 128
        remaining += bytes([byte | (0x80 if length else 0)])
        if not length:
            break
    return bytes([0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)]) + remaining + body


class _FakeSocket:
    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def recv(self, n: int) -> bytes:
        if self.pos >= len(self.data):
            raise BlockingIOError
        out = self.data[self.pos : self.pos + min(n, self.step)]
        self.pos += len(out)
        return out

    def close(self) -> None:
        pass


def _received_by(client_cls, data: bytes, step: int) -> list[tuple]:
    client = client_cls(
        mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5, manual_ack=True
    )
    got = []

    def on_message(c, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = None
        props = {
            k: v
            for k, v in vars(msg.properties).items()
            if k not in ("packetType", "types", "names", "properties")
        }
        got.append(
            (
                topic,
                msg._topic,
                bytes(msg.payload),
                msg.qos,
                msg.mid,
                msg.dup,
                msg.retain,
                props,
                msg.info.mid,
            )
        )

    client.on_message = on_message
    client._sock = _FakeSocket(data, step)
    while client._sock.pos < len(data) or (hasattr(client, "_rbuf") and client._rpos < len(client._rbuf)):
        assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
    client._sock = None
    return got


@pytest.mark.parametrize("step", [1, 7, 300, 1 << 20])
def test_the_buffered_client_receives_like_paho(step):
    """BufferedClient's own packet reader and PUBLISH handler give on_message what stock paho gives."""
    from devices.mqtt_client import BufferedClient, install_fast_properties

    install_fast_properties()
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v")]
    packed = props.pack()
    packets = [
        _publish_packet(b"fablab/v1/lab/m-1/telemetry", b'{"v":1}', qos=1, mid=7),
        _publish_packet(b"a/b", b"x" * 300, qos=0, mid=0, retain=True),
        _publish_packet(b"a/\xff", b"bad topic", qos=1, mid=8, dup=True),
        _publish_packet(b"with/props", b"p", qos=1, mid=9, props=packed),
        _publish_packet(b"", b"", qos=1, mid=10),
        _publish_packet(b"big", bytes(range(256)) * 600, qos=1, mid=11),
    ]
    data = b"".join(packets * 3)
    assert _received_by(BufferedClient, data, step) == _received_by(mqtt.Client, data, step)
