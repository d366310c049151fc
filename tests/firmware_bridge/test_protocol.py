"""Contract v1: topics, payload validation and the round trip of every message."""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge import protocol as p

SID = str(uuid.uuid4())
slugs = st.from_regex(r"[a-z0-9][a-z0-9-]{0,62}", fullmatch=True)


def payload(**fields: object) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


# ------------------------------------------------------------------------ topics


@given(lab=slugs, machine=slugs)
def test_machine_topics_round_trip(lab: str, machine: str) -> None:
    for builder, kind in [
        (p.topic_status, p.STATUS),
        (p.topic_telemetry, p.TELEMETRY),
        (p.topic_event, p.EVENT),
        (p.topic_cmd, p.CMD),
        (p.topic_cmd_ack, p.CMD_ACK),
    ]:
        topic = builder(lab, machine)
        assert topic == f"fablab/v1/{lab}/{machine}/{kind}"
        assert p.parse_topic(topic) == (kind, lab, machine)


def test_bridge_online_topic() -> None:
    topic = p.topic_bridge_online("bxl-centre-bridge")
    assert topic == "fablab/v1/_bridges/bxl-centre-bridge/online"
    parsed = p.parse_topic(topic)
    assert parsed.kind == p.ONLINE and parsed.lab is None and parsed.bridge == "bxl-centre-bridge"


@pytest.mark.parametrize(
    "topic",
    [
        "fablab/v2/lab/m/status",
        "fablab/v1/lab/m",
        "fablab/v1/Lab/m/status",
        "fablab/v1/lab/-m/status",
        "fablab/v1/lab/m/statu",
        "fablab/v1/lab/m/cmd/nack",
        "fablab/v1/_bridges/b/offline",
        "fablab/v1/_bridges/b/online/x",
        "other/v1/lab/m/status",
        "fablab/v1/" + "a" * 64 + "/m/status",
    ],
)
def test_parse_topic_rejects(topic: str) -> None:
    with pytest.raises(p.ProtocolError, match="topic"):
        p.parse_topic(topic)


@pytest.mark.parametrize("bad", ["", "UPPER", "-x", "a/b", "a+b", "#", "a" * 64, "é"])
def test_builders_reject_bad_slugs(bad: str) -> None:
    with pytest.raises(p.ProtocolError, match="lab"):
        p.topic_status(bad, "m")
    with pytest.raises(p.ProtocolError, match="machine"):
        p.topic_cmd("lab", bad)


def test_filters() -> None:
    assert p.filter_all_telemetry() == "fablab/v1/+/+/telemetry"
    assert p.filter_all_status("bxl-centre") == "fablab/v1/bxl-centre/+/status"
    assert p.filter_all_online() == "fablab/v1/_bridges/+/online"
    assert p.filter_machine("l", "m") == "fablab/v1/l/m/#"
    assert p.shared("hub", p.filter_all_events()) == "$share/hub/fablab/v1/+/+/event"
    assert p.unshare("$share/hub/fablab/v1/+/+/event") == "fablab/v1/+/+/event"
    with pytest.raises(p.ProtocolError, match="group"):
        p.shared("a/b", p.filter_all_events())
    subs = p.server_subscriptions("hub")
    # Retained topics are never shared subscriptions (a broker sends no retained message to them).
    assert p.filter_all_status() in subs and p.filter_all_online() in subs
    assert p.shared("hub", p.filter_all_telemetry()) in subs
    assert not any(s.startswith("$share") and ("status" in s or "online" in s) for s in subs)


# -------------------------------------------------------------------- round trips


def test_every_message_round_trips() -> None:
    job = p.Job(id="j1", name="bracket.gcode", started_ts=1_700_000_000_000, progress_pct=42.5)
    messages = [
        (
            p.decode_status,
            p.Status(
                state="running",
                enabled=True,
                bridge="b",
                adapter="grbl",
                ts=5,
                job=job,
                error=None,
                spool_dropped=3,
            ),
        ),
        (
            p.decode_status,
            p.Status(
                state="error",
                enabled=False,
                bridge="b",
                adapter="grbl",
                ts=5,
                error=p.MachineError(code="alarm_1", message="Hard limit"),
            ),
        ),
        (p.decode_telemetry, p.Telemetry(ts=1, sid=SID, seq=7, values={"power_w": 12.5, "count": 3})),
        (p.decode_event, p.Event(ts=1, sid=SID, seq=8, type="job_started", job=job, detail={"file": "a"})),
        (p.decode_command, p.Command(id=str(uuid.uuid4()), action="pause", ts=1, expires=2, booking="bk-1")),
        (p.decode_cmd_ack, p.CommandAck(id="c1", ok=True, ts=3)),
        (p.decode_cmd_ack, p.CommandAck(id="c1", ok=False, ts=3, error=p.AckError("expired", "too late"))),
        (p.decode_online, p.BridgeOnline(online=True, ts=9, spool_dropped=0, spool_pending=4)),
        (p.decode_online, p.BridgeOnline(online=False)),
    ]
    for decoder, msg in messages:
        raw = p.encode(msg)
        assert b", " not in raw and b": " not in raw  # compact JSON
        assert json.loads(raw)["v"] == 1
        assert decoder(raw) == msg


def test_will_payload_is_exact() -> None:
    assert p.WILL_PAYLOAD == b'{"v":1,"online":false}'
    assert p.encode(p.BridgeOnline(online=False)) == p.WILL_PAYLOAD
    assert p.decode_online(p.WILL_PAYLOAD) == p.BridgeOnline(online=False)


def test_decode_dispatches_by_topic() -> None:
    raw = p.encode(p.Telemetry(ts=1, sid=SID, seq=1, values={"power_w": 1.0}))
    parsed, msg = p.decode(p.topic_telemetry("l", "m"), raw)
    assert parsed.machine == "m" and isinstance(msg, p.Telemetry)


def test_unknown_fields_are_ignored() -> None:
    raw = payload(ts=1, sid=SID, seq=1, values={"power_w": 1}, future="yes")
    assert p.decode_telemetry(raw).values == {"power_w": 1}


# ---------------------------------------------------------------------- rejection


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "payload"),
        (b"[1]", "payload"),
        (b"\xff\xfe", "payload"),
        (json.dumps({"ts": 1}).encode(), "v"),
        (payload(v=2, ts=1), "v"),
        (json.dumps({"v": True, "ts": 1, "sid": SID, "seq": 1, "values": {"a": 1}}).encode(), "v"),
        (payload(sid=SID, seq=1, values={"a": 1}), "ts"),
        (payload(ts="1", sid=SID, seq=1, values={"a": 1}), "ts"),
        (payload(ts=1.5, sid=SID, seq=1, values={"a": 1}), "ts"),
        (payload(ts=-1, sid=SID, seq=1, values={"a": 1}), "ts"),
        (payload(ts=1, sid="nope", seq=1, values={"a": 1}), "sid"),
        (payload(ts=1, sid=SID, seq=True, values={"a": 1}), "seq"),
        (payload(ts=1, sid=SID, seq=1, values=[1]), "values"),
        (payload(ts=1, sid=SID, seq=1, values={}), "values"),
        (payload(ts=1, sid=SID, seq=1, values={"a": "hot"}), "values.a"),
        (payload(ts=1, sid=SID, seq=1, values={"a": True}), "values.a"),
        (payload(ts=1, sid=SID, seq=1, values={"Bad Name": 1}), "values"),
        (b'{"v":1,"ts":1,"sid":"' + SID.encode() + b'","seq":1,"values":{"a":NaN}}', "payload"),
        (b'{"v":1,"ts":1,"sid":"' + SID.encode() + b'","seq":1,"values":{"a":Infinity}}', "payload"),
        (b'{"v":1,"ts":1,"sid":"' + SID.encode() + b'","seq":1,"values":{"a":1e400}}', "values.a"),
    ],
)
def test_telemetry_rejections_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_telemetry(raw)
    assert str(exc.value).startswith(field), str(exc.value)


def test_size_limit() -> None:
    big = payload(ts=1, sid=SID, seq=1, type="alarm", detail={"x": "a" * p.MAX_PAYLOAD_BYTES})
    with pytest.raises(p.ProtocolError, match="16384"):
        p.decode_event(big)
    with pytest.raises(p.ProtocolError, match="16384"):
        p.encode(p.Event(ts=1, sid=SID, seq=1, type="alarm", detail={"x": "a" * p.MAX_PAYLOAD_BYTES}))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"action": "pause", "ts": 1, "expires": 2}, "id"),
        ({"id": "", "action": "pause", "ts": 1}, "id"),
        ({"id": "a b", "action": "pause", "ts": 1}, "id"),
        ({"id": "c1", "action": "explode", "ts": 1}, "action"),
        ({"id": "c1", "ts": 1}, "action"),
        ({"id": "c1", "action": "pause", "ts": 1, "expires": "soon"}, "expires"),
        ({"id": "c1", "action": "pause", "ts": 1, "booking": [1]}, "booking"),
        ({"id": "c1", "action": "pause", "ts": 1, "params": 3}, "params"),
        ({"id": "c1", "action": "pause"}, "ts"),
    ],
)
def test_command_rejections(fields: dict, field: str) -> None:
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_command(payload(**fields))
    assert str(exc.value).startswith(field), str(exc.value)


def test_command_expiry_and_id_recovery() -> None:
    cmd = p.decode_command(payload(id="c1", action="enable", ts=1, expires=100))
    assert cmd.is_expired(101) and not cmd.is_expired(100)
    assert not p.decode_command(payload(id="c2", action="enable", ts=1)).is_expired(10**15)
    assert p.command_id_of(payload(id="c9", action="explode")) == "c9"
    assert p.command_id_of(b"garbage") is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"state": "busy", "enabled": True, "bridge": "b", "adapter": "g", "ts": 1}, "state"),
        ({"state": "idle", "enabled": 1, "bridge": "b", "adapter": "g", "ts": 1}, "enabled"),
        ({"state": "idle", "enabled": True, "bridge": "B!", "adapter": "g", "ts": 1}, "bridge"),
        ({"state": "idle", "enabled": True, "bridge": "b", "ts": 1}, "adapter"),
        (
            {"state": "idle", "enabled": True, "bridge": "b", "adapter": "g", "ts": 1, "job": {"id": "j"}},
            "job.name",
        ),
        (
            {
                "state": "idle",
                "enabled": True,
                "bridge": "b",
                "adapter": "g",
                "ts": 1,
                "error": {"code": "x"},
            },
            "error.message",
        ),
    ],
)
def test_status_rejections(fields: dict, field: str) -> None:
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_status(payload(**fields))
    assert str(exc.value).startswith(field), str(exc.value)


def test_ack_rules() -> None:
    with pytest.raises(p.ProtocolError, match="error"):
        p.decode_cmd_ack(payload(id="c", ok=False, error=None, ts=1))
    with pytest.raises(p.ProtocolError, match=r"error\.code"):
        p.decode_cmd_ack(payload(id="c", ok=False, error={"code": "oops", "message": ""}, ts=1))
    with pytest.raises(p.ProtocolError, match="error"):
        p.decode_cmd_ack(payload(id="c", ok=True, error={"code": "invalid", "message": ""}, ts=1))
    for code in p.ACK_CODES:
        assert p.decode_cmd_ack(payload(id=None, ok=False, error={"code": code, "message": "m"}, ts=1)).error


@given(st.binary(max_size=200))
def test_decoders_never_raise_anything_but_protocol_error(raw: bytes) -> None:
    for decoder in (
        p.decode_status,
        p.decode_telemetry,
        p.decode_event,
        p.decode_command,
        p.decode_cmd_ack,
        p.decode_online,
    ):
        with contextlib.suppress(p.ProtocolError):
            decoder(raw)


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, 2**53),
    st.integers(0, 2**53),
)
def test_telemetry_property_round_trip(values: dict, ts: int, seq: int) -> None:
    msg = p.Telemetry(ts=ts, sid=SID, seq=seq, values=values)
    assert p.decode_telemetry(p.encode(msg)) == msg


def test_contract_document_examples_decode() -> None:
    """Every ```mqtt block of hardware_docs/mqtt-contract.md is a topic and a payload that decode."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "hardware_docs" / "mqtt-contract.md").read_text()
    blocks = re.findall(r"```mqtt\n(.*?)\n```", doc, flags=re.S)
    kinds = set()
    for block in blocks:
        topic, raw = block.split("\n", 1)
        parsed, _ = p.decode(topic.strip(), raw.strip().encode())
        kinds.add(parsed.kind)
    assert kinds == {p.STATUS, p.TELEMETRY, p.EVENT, p.CMD, p.CMD_ACK, p.ONLINE}
