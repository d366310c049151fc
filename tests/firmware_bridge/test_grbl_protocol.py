"""GRBL 1.1 line parsing: status reports in any field order, codes and their meanings, every line type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.adapters.base import ERROR, IDLE, PAUSED, RUNNING
from firmware_bridge.adapters.grbl import facts, wire
from firmware_bridge.adapters.grbl.reports import map_state

coord = st.floats(min_value=-9999, max_value=9999, allow_nan=False).map(lambda v: round(v, 3))
vec3 = st.tuples(coord, coord, coord)
states = st.sampled_from(
    [
        "Idle",
        "Run",
        "Hold:0",
        "Hold:1",
        "Jog",
        "Alarm",
        "Door:0",
        "Door:1",
        "Door:2",
        "Door:3",
        "Check",
        "Home",
        "Sleep",
    ]
)


def _v(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:.3f}" for v in values)


@st.composite
def reports(draw: st.DrawFn) -> tuple[str, dict[str, object]]:
    """A status report with a random subset of optional fields in a random order, and what it holds."""
    state = draw(states)
    use_wpos = draw(st.booleans())
    pos = draw(vec3)
    expected: dict[str, object] = {"state": state, "pos": pos, "wpos": use_wpos}
    optional: list[str] = []
    if draw(st.booleans()):
        blocks, rx = draw(st.integers(0, 15)), draw(st.integers(0, 128))
        optional.append(f"Bf:{blocks},{rx}")
        expected["bf"] = (blocks, rx)
    if draw(st.booleans()):
        line = draw(st.integers(1, 9_999_999))
        optional.append(f"Ln:{line}")
        expected["ln"] = line
    if draw(st.booleans()):
        feed = draw(st.integers(0, 20000))
        if draw(st.booleans()):
            speed = draw(st.integers(0, 30000))
            optional.append(f"FS:{feed},{speed}")
            expected["spindle"] = speed
        else:
            optional.append(f"F:{feed}")
        expected["feed"] = feed
    if draw(st.booleans()):
        pins = "".join(draw(st.permutations("XYZPDHRS"))[: draw(st.integers(1, 8))])
        optional.append(f"Pn:{pins}")
        expected["pins"] = pins
    if draw(st.booleans()):
        wco = draw(vec3)
        optional.append(f"WCO:{_v(wco)}")
        expected["wco"] = wco
    if draw(st.booleans()):
        ov = (draw(st.integers(10, 200)), draw(st.sampled_from([25, 50, 100])), draw(st.integers(10, 200)))
        optional.append(f"Ov:{ov[0]},{ov[1]},{ov[2]}")
        expected["ov"] = ov
        if draw(st.booleans()):
            acc = "".join(draw(st.permutations("SFM"))[: draw(st.integers(1, 3))])
            optional.append(f"A:{acc}")
            expected["acc"] = acc
    order = draw(st.permutations(optional))
    fields = [state, ("WPos:" if use_wpos else "MPos:") + _v(pos), *order]
    return "<" + "|".join(fields) + ">", expected


@given(reports())
def test_any_field_order_and_optional_subset_parses(case: tuple[str, dict[str, object]]) -> None:
    line, expected = case
    report = wire.parse_status(line)
    assert wire.state_name(report) == expected["state"]
    if expected["wpos"]:
        assert report.wpos == pytest.approx(expected["pos"]) and report.mpos is None
    else:
        assert report.mpos == pytest.approx(expected["pos"]) and report.wpos is None
    if "bf" in expected:
        assert (report.planner_blocks_free, report.rx_bytes_free) == expected["bf"]
    else:
        assert report.planner_blocks_free is None and report.rx_bytes_free is None
    assert report.line_number == expected.get("ln")
    assert report.feed == expected.get("feed")
    assert report.spindle == expected.get("spindle")
    assert report.pins == expected.get("pins")
    if "wco" in expected:
        assert report.wco == pytest.approx(expected["wco"])
    else:
        assert report.wco is None
    assert report.overrides == expected.get("ov")
    if "ov" in expected:
        assert report.accessories == expected.get("acc", "")
    else:
        assert report.accessories is None
    # parse_line classifies it the same way.
    assert wire.parse_line(line) == report


@given(st.text(max_size=200))
def test_parse_line_never_raises(text: str) -> None:
    parsed = wire.parse_line(text)
    assert parsed is not None


def test_documented_examples() -> None:
    report = wire.parse_status("<Idle|MPos:0.000,-10.000,5.000|FS:0.0,0|WCO:0.000,1.551,5.664>")
    assert report.state == "Idle" and report.substate is None
    assert report.work_position(None) == pytest.approx((0.0, -11.551, -0.664))
    run = wire.parse_status("<Run|MPos:10.000,0.000,0.000|Bf:15,128|FS:500,8000|Ov:100,100,100|A:SFM>")
    assert run.feed == 500 and run.spindle == 8000 and run.accessories == "SFM"
    assert run.planner_blocks_free == 15 and run.rx_bytes_free == 128
    # With WPos, the machine position needs the last WCO.
    wpos = wire.parse_status("<Hold:1|WPos:1.000,2.000,3.000|F:300>")
    assert wpos.substate == 1 and wpos.spindle is None and wpos.feed == 300
    assert wpos.machine_position((1.0, 1.0, 1.0)) == pytest.approx((2.0, 3.0, 4.0))
    assert wpos.machine_position(None) is None
    # An A-axis (4 values) and an unknown field (a fork's) are tolerated.
    fork = wire.parse_status("<Tool|MPos:1,2,3,4|XX:7>")
    assert fork.mpos == (1, 2, 3, 4) and fork.fields["XX"] == "7"


@pytest.mark.parametrize(
    "line",
    [
        "<>",
        "<Idle>",
        "<Idle|FS:0,0>",
        "<Idle|MPos:a,b,c>",
        "<|MPos:0,0,0>",
        "Idle|MPos:0,0,0",
        "<Hold:x|MPos:0,0,0>",
    ],
)
def test_malformed_reports_are_rejected_and_classified_unknown(line: str) -> None:
    with pytest.raises(wire.StatusParseError):
        wire.parse_status(line)
    assert isinstance(wire.parse_line(line), wire.Unknown)


def test_every_line_type() -> None:
    assert wire.parse_line("ok") == wire.Ok()
    assert wire.parse_line("error:22") == wire.Error(22)
    assert wire.parse_line("ALARM:3") == wire.Alarm(3)
    assert wire.parse_line("Grbl 1.1h ['$' for help]") == wire.Welcome("1.1h")
    assert wire.parse_line("[MSG:'$H'|'$X' to unlock]") == wire.Message("MSG", "'$H'|'$X' to unlock")
    assert wire.parse_line("[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0 S0]").kind == "GC"
    assert wire.parse_line("[VER:1.1h.20190830:]") == wire.Message("VER", "1.1h.20190830:")
    assert wire.parse_line("[PRB:0.000,0.000,0.000:0]").kind == "PRB"
    assert wire.parse_line("$32=1") == wire.Setting(32, 1.0)
    assert wire.parse_line("$110=5000.000") == wire.Setting(110, 5000.0)
    assert wire.parse_line(">G54G20:ok") == wire.StartupLine("G54G20", None)
    assert wire.parse_line(">G54G20:error:20") == wire.StartupLine("G54G20", 20)
    assert isinstance(wire.parse_line("error:x"), wire.Unknown)
    assert isinstance(wire.parse_line("garbage"), wire.Unknown)
    assert wire.is_ack(wire.Ok()) and wire.is_ack(wire.Error(1)) and not wire.is_ack(wire.Alarm(1))


def test_alarm_and_error_meanings() -> None:
    assert set(facts.ALARM_CODES) == set(range(1, 11))
    assert set(facts.ERROR_CODES) == set(range(1, 18)) | set(range(20, 39))
    assert "Hard limit" in wire.Alarm(1).meaning
    assert "reset while in motion" in wire.Alarm(3).meaning
    assert "door" in facts.alarm_meaning(7)
    assert "G-code lock" in wire.Error(9).meaning
    assert "feed rate" in facts.error_meaning(22)
    assert "Line overflow" in facts.error_meaning(11)
    # Forks add codes: an unknown code gets a generic meaning rather than an exception.
    assert "Unknown alarm 42" in facts.alarm_meaning(42)
    assert "Unknown error 79" in facts.error_meaning(79)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("Idle", IDLE),
        ("Sleep", IDLE),
        ("Check", IDLE),
        ("Run", RUNNING),
        ("Jog", RUNNING),
        ("Home", RUNNING),
        ("Hold", PAUSED),
        ("Door", PAUSED),
        ("Alarm", ERROR),
    ],
)
def test_state_mapping(state: str, expected: str) -> None:
    assert map_state(state) == expected


def test_realtime_bytes_and_line_cleaning() -> None:
    assert all(facts.is_realtime_byte(b) for b in b"?!~\x18\x84\x85\x90\xa1")
    assert not any(facts.is_realtime_byte(b) for b in b"G1X10$\n")
    assert wire.clean_gcode_line("G1 X10 (move!) Y5 ; comment?") == "G1 X10  Y5"
    assert wire.clean_gcode_line("(only a comment)") == ""
    assert wire.clean_gcode_line("; header") == ""
