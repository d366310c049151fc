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
        st.floats(min_value=-p.MAX_READING, max_value=p.MAX_READING) | st.integers(-(2**53), 2**53),
        min_size=1,
        max_size=20,
    ),
    st.integers(0, p.MAX_TS_MS),
    st.integers(0, p.MAX_INT),
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


# ------------------------------------------------------------------------ bounds

NOW = 1_790_000_000_000  # a fixed receiver clock: these tests never read the wall clock
MINUTE = 60_000
DAY = 24 * 60 * MINUTE


def telemetry_raw(values: str, *, ts: int = NOW, seq: int | str = 1) -> bytes:
    """A telemetry payload with ``values`` spelled as raw JSON (json.dumps cannot write some of them)."""
    return f'{{"v":1,"ts":{ts},"sid":"{SID}","seq":{seq},"values":{values}}}'.encode()


def test_a_reading_above_the_bound_is_a_protocol_error() -> None:
    with pytest.raises(p.ProtocolError, match=r"^values\.power_w: must be between"):
        p.decode_telemetry(telemetry_raw(f'{{"power_w": {p.MAX_READING + 1}}}'))
    with pytest.raises(p.ProtocolError, match=r"^values\.power_w: must be between"):
        p.decode_telemetry(telemetry_raw('{"power_w": -1e300}'))
    with pytest.raises(p.ProtocolError, match=r"^values\.power_w"):  # the sender checks it too
        p.encode(p.Telemetry(ts=NOW, sid=SID, seq=1, values={"power_w": 1e16}))
    assert p.decode_telemetry(telemetry_raw(f'{{"power_w": {p.MAX_READING}}}')).values["power_w"] == 2**53


def test_a_5000_digit_integer_is_a_protocol_error_not_a_crash() -> None:
    huge = "9" * 5000  # beyond Python's 4,300-digit int conversion limit: json raises a bare ValueError
    for raw in (
        telemetry_raw(f'{{"power_w": {huge}}}'),
        telemetry_raw('{"power_w": 1}', seq=huge),
        f'{{"v":1,"id":"c1","action":"pause","ts":{huge}}}'.encode(),
    ):
        for decoder in (p.decode_telemetry, p.decode_command, p.decode_status):
            with pytest.raises(p.ProtocolError, match=r"^payload: not JSON") as caught:
                decoder(raw)
            assert type(caught.value) is p.ProtocolError and len(str(caught.value)) < 200
    assert p.command_id_of(f'{{"id":"c1","x":{huge}}}'.encode()) is None


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ("1e400", "must be finite"),  # json reads it as inf
        (str(10**400), "must be between"),  # float() of it raises OverflowError
        (str(-(10**4000)), "must be between"),
        ("NaN", "NaN is not allowed"),
        ("-Infinity", "-Infinity is not allowed"),
    ],
)
def test_numbers_that_do_not_fit_a_float_are_protocol_errors(values: str, needle: str) -> None:
    with pytest.raises(p.ProtocolError, match=needle) as caught:
        p.decode_telemetry(telemetry_raw(f'{{"power_w": {values}}}'))
    assert len(str(caught.value)) < 200  # the message says what was wrong, without echoing 4,000 digits


def test_minus_zero_and_the_largest_exact_integer_are_valid_readings() -> None:
    msg = p.decode_telemetry(telemetry_raw(f'{{"a": -0.0, "b": {-(2**53)}, "c": 1e-300}}'))
    assert msg.values == {"a": 0.0, "b": -(2**53), "c": 1e-300} and msg.refused == ()


def test_one_bad_reading_is_left_out_and_the_valid_ones_are_kept() -> None:
    msg = p.decode_telemetry(
        telemetry_raw('{"power_w": 12.5, "energy_wh": 1e999, "Bad": 1, "temp_c": "hot"}')
    )
    assert msg.values == {"power_w": 12.5}
    assert len(msg.refused) == 3
    assert any(r.startswith("values.energy_wh: must be finite") for r in msg.refused)
    assert any("'Bad'" in r for r in msg.refused)
    assert any(r.startswith("values.temp_c: must be a number") for r in msg.refused)


def test_more_readings_than_the_limit_is_a_protocol_error() -> None:
    at_limit = {f"r{i}": i for i in range(p.MAX_READINGS)}
    assert len(p.decode_telemetry(payload(ts=NOW, sid=SID, seq=1, values=at_limit)).values) == 64
    over = {f"r{i}": i for i in range(p.MAX_READINGS + 1)}
    with pytest.raises(p.ProtocolError, match=r"^values: 65 readings, more than 64"):
        p.decode_telemetry(payload(ts=NOW, sid=SID, seq=1, values=over))
    with pytest.raises(p.ProtocolError, match=r"^values: 65 readings"):
        p.encode(p.Telemetry(ts=NOW, sid=SID, seq=1, values=over))


@pytest.mark.parametrize("seq", [-1, 2**63, 10**30])
def test_seq_outside_a_signed_64_bit_integer_is_a_protocol_error(seq: int) -> None:
    with pytest.raises(p.ProtocolError, match=r"^seq: must be"):
        p.decode_telemetry(telemetry_raw('{"a": 1}', seq=seq))
    assert p.decode_telemetry(telemetry_raw('{"a": 1}', seq=2**63 - 1)).seq == 2**63 - 1


def test_a_ts_beyond_the_year_9999_is_a_protocol_error_even_without_a_clock() -> None:
    with pytest.raises(p.ProtocolError, match=r"^ts: must be <="):
        p.decode_telemetry(telemetry_raw('{"a": 1}', ts=p.MAX_TS_MS + 1))
    with pytest.raises(p.ProtocolError, match=r"^spool_dropped: must be <="):
        p.decode_status(
            payload(state="idle", enabled=True, bridge="b", adapter="g", ts=NOW, spool_dropped=2**63)
        )


def test_a_timestamp_ten_minutes_ahead_is_refused() -> None:
    raw = telemetry_raw('{"a": 1}', ts=NOW + 10 * MINUTE)
    assert p.decode_telemetry(raw).ts == NOW + 10 * MINUTE  # no clock given: structure only
    with pytest.raises(p.ProtocolError, match=r"^ts: .* 600 s ahead of the receiver's clock"):
        p.decode_telemetry(raw, now_ms=NOW)
    with pytest.raises(p.ProtocolError, match=r"^ts: .*ahead"):
        p.decode(p.topic_telemetry("l", "m"), raw, now_ms=NOW)
    status = payload(state="idle", enabled=True, bridge="b", adapter="g", ts=NOW + 10 * MINUTE)
    with pytest.raises(p.ProtocolError, match=r"^ts: "):
        p.decode_status(status, now_ms=NOW)
    job = {"id": "j", "name": "n", "started_ts": NOW + 10 * MINUTE, "progress_pct": None}
    with pytest.raises(p.ProtocolError, match=r"^job\.started_ts: "):
        p.decode_event(payload(ts=NOW, sid=SID, seq=1, type="job_started", job=job), now_ms=NOW)


def test_a_timestamp_within_the_clock_skew_is_accepted() -> None:
    ts = NOW + p.MAX_FUTURE_SKEW_MS
    assert p.decode_telemetry(telemetry_raw('{"a": 1}', ts=ts), now_ms=NOW).ts == ts
    with pytest.raises(p.ProtocolError):
        p.decode_telemetry(telemetry_raw('{"a": 1}', ts=ts + 1), now_ms=NOW)


def test_a_week_old_spooled_message_is_accepted() -> None:
    week_old = NOW - 7 * DAY
    assert p.decode_telemetry(telemetry_raw('{"a": 1}', ts=week_old), now_ms=NOW).ts == week_old
    event = payload(ts=week_old, sid=SID, seq=2, type="job_finished")
    assert p.decode_event(event, now_ms=NOW).ts == week_old


def test_a_timestamp_older_than_the_horizon_is_refused() -> None:
    oldest = NOW - p.MAX_AGE_MS
    assert p.decode_telemetry(telemetry_raw('{"a": 1}', ts=oldest), now_ms=NOW).ts == oldest
    with pytest.raises(p.ProtocolError, match=r"^ts: .*more than 366 days old"):
        p.decode_telemetry(telemetry_raw('{"a": 1}', ts=oldest - 1), now_ms=NOW)
    with pytest.raises(p.ProtocolError, match=r"^ts: .*days old"):  # a Pi that booted without network time
        p.decode_online(payload(online=True, ts=1000), now_ms=NOW)
    assert p.decode_online(p.WILL_PAYLOAD, now_ms=NOW).online is False  # the will has no ts


def test_the_past_horizon_covers_a_full_bridge_spool() -> None:
    """A full default spool of one machine reporting every 10 s spans 23 days; the horizon is a year."""
    from firmware_bridge.config import DEFAULT_SPOOL_MAX_MESSAGES

    assert p.MAX_AGE_MS >= DEFAULT_SPOOL_MAX_MESSAGES * 10_000 * 10
    assert p.MAX_AGE_MS >= 365 * DAY


def test_commands_keep_their_own_lifetime_not_the_window() -> None:
    """A command's ts is the server's; ``expires`` decides, so decode() leaves the window to it."""
    raw = payload(id="c1", action="pause", ts=NOW + DAY, expires=None)
    assert p.decode(p.topic_cmd("l", "m"), raw, now_ms=NOW)[1].ts == NOW + DAY


def test_deeply_nested_json_is_a_protocol_error() -> None:
    deep = "[" * 5000 + "]" * 5000  # json's recursion limit: a RecursionError inside the decoder
    for raw in (deep.encode(), f'{{"v":1,"detail":{deep}}}'.encode()):
        with pytest.raises(p.ProtocolError, match=r"^payload: nested too deeply"):
            p.decode_event(raw)
    nested: object = 1
    for _ in range(p.MAX_DEPTH + 1):
        nested = {"x": nested}
    with pytest.raises(p.ProtocolError, match=f"nested deeper than {p.MAX_DEPTH} levels"):
        p.decode_event(payload(ts=NOW, sid=SID, seq=1, type="alarm", detail=nested))
    with pytest.raises(p.ProtocolError, match="nested deeper"):
        p.decode_command(payload(id="c1", action="pause", ts=NOW, params=nested))
    assert p.decode_event(payload(ts=NOW, sid=SID, seq=1, type="alarm", detail=nested["x"])).detail


def test_integers_in_free_json_must_fit_in_64_bits() -> None:
    with pytest.raises(p.ProtocolError, match=r"^detail\.code: integers must fit in 64 bits"):
        p.decode_event(payload(ts=NOW, sid=SID, seq=1, type="alarm", detail={"code": 2**64}))


def test_error_messages_never_echo_a_huge_value() -> None:
    big = "x" * 10_000
    for raw, decoder in (
        (payload(id=big, action="pause", ts=NOW), p.decode_command),
        (payload(id="c1", action=big, ts=NOW), p.decode_command),
        (payload(ts=NOW, sid=big, seq=1, values={"a": 1}), p.decode_telemetry),
        (payload(state=big, enabled=True, bridge="b", adapter="g", ts=NOW), p.decode_status),
    ):
        with pytest.raises(p.ProtocolError) as caught:
            decoder(raw)
        assert len(str(caught.value)) < 300


numbers_json = st.one_of(
    st.integers().map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-0", "-0.0", "1e-400", "0.1e999999"]),
    st.floats().map(lambda f: json.dumps(f)),
)


@given(st.lists(st.tuples(st.from_regex(r"[a-zA-Z_ ]{0,6}", fullmatch=True), numbers_json), max_size=5))
def test_decoders_turn_every_number_into_a_value_or_a_protocol_error(pairs: list) -> None:
    values = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"
    for raw in (telemetry_raw(values), telemetry_raw('{"a":1}', seq=pairs[0][1] if pairs else 1)):
        try:
            msg = p.decode_telemetry(raw, now_ms=NOW)
        except p.ProtocolError:
            continue
        assert msg.values and all(abs(v) <= p.MAX_READING for v in msg.values.values())
        assert p.decode_telemetry(p.encode(msg)) == msg


def test_free_text_with_nul_or_a_lone_surrogate_is_cleaned_not_refused() -> None:
    now = p.now_ms()
    payload = json.dumps(
        {
            "v": 1,
            "state": "running",
            "enabled": True,
            "bridge": "b-1",
            "adapter": "grbl",
            "ts": now,
            "job": {"id": "j", "name": "a\u0000b\ud800", "started_ts": now, "progress_pct": 1},
            "error": {"code": "e", "message": "tab\tstays, \u001b goes"},
        }
    )
    msg = p.decode_status(payload)
    assert msg.job is not None and msg.job.name == "a\ufffdb\ufffd"
    assert msg.error is not None and msg.error.message == "tab\tstays, \ufffd goes"
    # What the server stores must survive a strict UTF-8 encoder (lone surrogates do not).
    msg.job.name.encode("utf-8")


@pytest.mark.parametrize("field", ["adapter", "job_id", "error_code"])
def test_a_control_character_in_an_identifier_is_a_protocol_error(field: str) -> None:
    now = p.now_ms()
    data = {
        "v": 1,
        "state": "running",
        "enabled": True,
        "bridge": "b-1",
        "adapter": "grbl",
        "ts": now,
        "job": {"id": "j", "name": "n", "started_ts": now, "progress_pct": 1},
        "error": {"code": "e", "message": "m"},
    }
    if field == "adapter":
        data["adapter"] = "gr\u0000bl"
    elif field == "job_id":
        data["job"]["id"] = "j\ud800"
    else:
        data["error"]["code"] = "e\n"
    with pytest.raises(p.ProtocolError, match="control characters"):
        p.decode_status(json.dumps(data))


def test_strings_in_free_json_are_cleaned_keys_included() -> None:
    payload = json.dumps(
        {
            "v": 1,
            "ts": p.now_ms(),
            "sid": "a" * 32,
            "seq": 1,
            "type": "alarm",
            "detail": {"k\u0000": ["\udfff"]},
        }
    )
    assert p.decode_event(payload).detail == {"k\ufffd": ["\ufffd"]}


# ------------------------------------------------------------------------ capabilities

STATUS_FIELDS = {"state": "idle", "enabled": True, "bridge": "b", "adapter": "shelly", "ts": 1}


def test_capabilities_round_trip_in_the_status() -> None:
    for caps in [(), ("enable", "disable"), ("pause", "resume", "cancel"), p.ACTIONS]:
        msg = p.Status(**STATUS_FIELDS, capabilities=caps)
        raw = p.encode(msg)
        assert json.loads(raw)["capabilities"] == list(caps)
        assert p.decode_status(raw) == msg


def test_a_status_without_capabilities_decodes_to_none_and_encodes_without_the_field() -> None:
    """An old bridge sends no ``capabilities``: that is "not declared", not "can do nothing"."""
    assert p.decode_status(payload(**STATUS_FIELDS)).capabilities is None
    assert p.decode_status(payload(**STATUS_FIELDS, capabilities=None)).capabilities is None
    assert "capabilities" not in json.loads(p.encode(p.Status(**STATUS_FIELDS)))
    assert p.decode_status(payload(**STATUS_FIELDS, capabilities=[])).capabilities == ()


def test_a_newer_bridges_unknown_capability_is_left_out_and_the_order_is_the_contracts() -> None:
    raw = payload(**STATUS_FIELDS, capabilities=["cancel", "home", "pause", "pause"])
    assert p.decode_status(raw).capabilities == ("pause", "cancel")


@pytest.mark.parametrize(
    "caps",
    ["pause", {"pause": True}, [1], ["Pause"], ["pa use"], [None], ["x"] * (p.MAX_CAPABILITIES + 1)],
)
def test_malformed_capabilities_are_a_protocol_error_naming_the_field(caps: object) -> None:
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_status(payload(**STATUS_FIELDS, capabilities=caps))
    assert str(exc.value).startswith("capabilities"), str(exc.value)


@pytest.mark.parametrize("caps", [("home",), ("pause", "pause")])
def test_a_bridge_cannot_send_capabilities_outside_the_contract(caps: tuple[str, ...]) -> None:
    with pytest.raises(p.ProtocolError, match="capabilities"):
        p.encode(p.Status(**STATUS_FIELDS, capabilities=caps))


def test_machine_capabilities_add_the_interlock_only_when_configured() -> None:
    assert p.machine_capabilities(p.JOB_ACTIONS, interlock=False) == ("pause", "resume", "cancel")
    assert p.machine_capabilities(p.JOB_ACTIONS, interlock=True) == p.ACTIONS
    assert p.machine_capabilities((), interlock=True) == ("enable", "disable")
    assert p.machine_capabilities((), interlock=False) == ()
    # An adapter cannot grant itself the interlock, nor an action the contract does not have.
    assert p.machine_capabilities(("enable", "cancel", "home"), interlock=False) == ("cancel",)


def test_capability_names_are_the_action_names() -> None:
    assert p.ACTIONS == (p.ENABLE, p.DISABLE, p.PAUSE, p.RESUME, p.CANCEL)
    assert set(p.INTERLOCK_ACTIONS) | set(p.JOB_ACTIONS) == set(p.ACTIONS)
    assert all(set(caps) <= set(p.JOB_ACTIONS) for caps in p.LEGACY_CAPABILITIES.values())


# -- the telemetry fast path (decode_telemetry's common case) agrees with the full decoder

_FAST_NOW = 1_800_000_000_000
_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(
        [0, 1, -1, 2**53, 2**53 + 1, -(2**53), p.MAX_INT, p.MAX_INT + 1, p.MAX_TS_MS, p.MAX_TS_MS + 1]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1.5, 1e300, 2.0**53, 9007199254740993.0]),
    st.text(max_size=8),
)
_names = st.one_of(
    st.sampled_from(["power_w", "energy_wh", "a", "x" * 64, "x" * 65, "Power", "9a", "", "a-b", "ä"]),
    st.text(max_size=6),
)
_sids = st.one_of(
    st.sampled_from([SID, SID.upper(), "{" + SID + "}", SID.replace("-", ""), "urn:uuid:" + SID, "nope", ""]),
    _json_scalars,
)
_ts = st.one_of(
    st.sampled_from(
        [
            _FAST_NOW,
            _FAST_NOW - p.MAX_AGE_MS,
            _FAST_NOW - p.MAX_AGE_MS - 1,
            _FAST_NOW + p.MAX_FUTURE_SKEW_MS,
            _FAST_NOW + p.MAX_FUTURE_SKEW_MS + 1,
            0,
            -1,
            p.MAX_TS_MS,
        ]
    ),
    st.integers(min_value=_FAST_NOW - 2 * p.MAX_AGE_MS, max_value=_FAST_NOW + 10**6),
    _json_scalars,
)
_values = st.one_of(
    st.dictionaries(_names, _json_scalars, max_size=5), _json_scalars, st.lists(_json_scalars, max_size=2)
)
_telemetry_dicts = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), st.sampled_from([1.0, True, 2, "1"])),
        "ts": _ts,
        "sid": _sids,
        "seq": st.one_of(st.integers(min_value=-2, max_value=2**64), _json_scalars),
        "values": _values,
        "extra": _json_scalars,
    },
)


_good_numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53), st.floats(min_value=-(2.0**53), max_value=2.0**53)
)


def _mostly(valid, odd):
    """``valid`` nine times in ten, else ``odd`` (so that the fast path is taken often)."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda i: valid if i else odd)


_valid_values = st.dictionaries(
    st.from_regex(p.NAME_RE, fullmatch=True), _good_numbers, min_size=1, max_size=4
)
_nearly_valid = st.fixed_dictionaries(
    {
        "v": _mostly(st.just(1), st.sampled_from([1.0, True, 2])),
        "ts": _mostly(st.integers(min_value=_FAST_NOW - p.MAX_AGE_MS, max_value=_FAST_NOW), _ts),
        "sid": _mostly(st.one_of(st.just(SID), st.uuids().map(str)), _sids),
        "seq": _mostly(st.integers(min_value=0, max_value=p.MAX_INT), _json_scalars),
        "values": _mostly(
            _valid_values,
            st.dictionaries(_names, st.one_of(_good_numbers, _json_scalars), max_size=p.MAX_READINGS + 2),
        ),
    },
    optional={"extra": _json_scalars, "job": _json_scalars},
)


def _payloads():
    as_json = st.one_of(_telemetry_dicts, _nearly_valid, _nearly_valid).map(lambda d: json.dumps(d).encode())
    mutated = st.tuples(as_json, st.integers(min_value=0, max_value=200), st.binary(max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    texts = st.sampled_from(
        [
            b'{"v":1,"ts":1800000000000,"sid":"' + SID.encode() + b'","seq":1,"values":{"power_w":NaN}}',
            b'{"v":1,"ts":1800000000000,"sid":"' + SID.encode() + b'","seq":1,"values":{"power_w":1e999}}',
            b'{"v":1,"ts":1800000000000,"sid":"'
            + SID.encode()
            + b'","seq":1,"values":{"power_w":1,"power_w":"x"}}',
            b'{"v":1,"v":2,"ts":1800000000000,"sid":"' + SID.encode() + b'","seq":1,"values":{"power_w":1}}',
            b'{"v":1,"ts":1800000000000,"sid":"' + SID.encode() + b'","seq":1,"values":{"p\\u006fwer_w":1}}',
            b"\xff\xfe",
            b"[1]",
            b"",
        ]
    )
    valid = _nearly_valid.map(lambda d: json.dumps(d).encode())
    return st.one_of(
        valid, valid, valid, as_json, mutated, texts, st.binary(max_size=40), valid.map(bytearray)
    )


def _decode_or_error(payload, now_ms):
    try:
        return p.decode_telemetry(payload, now_ms=now_ms)
    except p.ProtocolError as exc:
        return exc


@given(_payloads(), st.sampled_from([_FAST_NOW, None]))
def test_the_telemetry_fast_path_agrees_with_the_full_decoder(payload, now_ms):
    fast = p._decode_telemetry_fast(payload, now_ms)
    if fast is None:
        return  # the full decoder decides alone: nothing to compare
    p._GOOD_NAMES.clear()  # the full decoder below must not take the fast path's cached names
    with unittest_mock_no_fast_path():
        full = _decode_or_error(payload, now_ms)
    assert not isinstance(full, Exception), f"fast path accepted what the full decoder refuses: {full}"
    assert full == fast and full.refused == fast.refused == ()
    assert [(k, type(v), v) for k, v in full.values.items()] == [
        (k, type(v), v) for k, v in fast.values.items()
    ]


@contextlib.contextmanager
def unittest_mock_no_fast_path():
    from unittest import mock

    with mock.patch.object(p, "_decode_telemetry_fast", lambda payload, now_ms: None):
        yield


def test_the_telemetry_fast_path_takes_the_common_message():
    raw = json.dumps(
        {"v": 1, "ts": _FAST_NOW, "sid": SID, "seq": 3, "values": {"power_w": 12, "energy_wh": 1.5}}
    ).encode()
    fast = p._decode_telemetry_fast(raw, _FAST_NOW)
    assert fast == p.Telemetry(ts=_FAST_NOW, sid=SID, seq=3, values={"power_w": 12, "energy_wh": 1.5})
