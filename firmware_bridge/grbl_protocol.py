"""GRBL 1.1 serial protocol: pure parsing of what the controller sends, and the tables of its codes.

No I/O here: the adapter, the pass-through, ``send_file`` and the simulator all share these
definitions. Sources: ``gnea/grbl`` ``doc/markdown/interface.md`` and ``doc/csv/*_codes_en_US.csv``
(see ``HARDWARE_REFERENCE.md`` §2).

Every parse function accepts one line *without* its line terminator and never raises on garbage:
:func:`parse_line` returns an :class:`Unknown` for anything it does not recognise, because a device
hiccup (a half line after a reset, line noise) must never kill the reader thread.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

# --- realtime bytes (never buffered, no newline) ----------------------------------------------------

STATUS_QUERY = b"?"
CYCLE_START = b"~"
FEED_HOLD = b"!"
SOFT_RESET = b"\x18"
SAFETY_DOOR = b"\x84"
JOG_CANCEL = b"\x85"
FEED_OV_RESET = b"\x90"
FEED_OV_PLUS_10 = b"\x91"
FEED_OV_MINUS_10 = b"\x92"
FEED_OV_PLUS_1 = b"\x93"
FEED_OV_MINUS_1 = b"\x94"
RAPID_OV_RESET = b"\x95"
RAPID_OV_50 = b"\x96"
RAPID_OV_25 = b"\x97"
SPINDLE_OV_RESET = b"\x99"
SPINDLE_OV_PLUS_10 = b"\x9a"
SPINDLE_OV_MINUS_10 = b"\x9b"
SPINDLE_OV_PLUS_1 = b"\x9c"
SPINDLE_OV_MINUS_1 = b"\x9d"
SPINDLE_STOP_TOGGLE = b"\x9e"
FLOOD_TOGGLE = b"\xa0"
MIST_TOGGLE = b"\xa1"

#: The serial RX buffer is 128 bytes and holds at most 127 (``grbl/serial.h``; ``stream.py``).
RX_BUFFER_SIZE = 128
#: The most unacknowledged bytes a character-counting sender may have in flight.
RX_BUFFER_USABLE = RX_BUFFER_SIZE - 1


def is_realtime_byte(value: int) -> bool:
    """True for a byte GRBL picks out of the stream at once (``?``, ``!``, ``~``, Ctrl-X, 0x80-0xFF)."""
    return value in (0x3F, 0x21, 0x7E, 0x18) or value >= 0x80


# --- code tables ------------------------------------------------------------------------------------

#: ``error:n`` meanings (``doc/csv/error_codes_en_US.csv``).
ERROR_CODES: Mapping[int, str] = {
    1: "Expected command letter: G-code words consist of a letter and a value",
    2: "Bad number format: missing the expected G-code word value or numeric format is not valid",
    3: "Invalid statement: Grbl '$' system command was not recognized or supported",
    4: "Value < 0: negative value received for an expected positive value",
    5: "Setting disabled: homing cycle failure, homing is not enabled via settings",
    6: "Value < 3 usec: minimum step pulse time must be greater than 3 usec",
    7: "EEPROM read fail, using defaults: an EEPROM read failed, auto-restoring affected values",
    8: "Not idle: Grbl '$' command cannot be used unless Grbl is IDLE",
    9: "G-code lock: G-code commands are locked out during alarm or jog state",
    10: "Homing not enabled: soft limits cannot be enabled without homing also enabled",
    11: "Line overflow: max characters per line exceeded, line was not processed",
    12: "Step rate > 30 kHz: the setting exceeds the maximum step rate supported",
    13: "Check door: safety door detected as opened and door state initiated",
    14: "Line length exceeded: build info or startup line exceeded EEPROM line length limit",
    15: "Travel exceeded: jog target exceeds machine travel, command ignored",
    16: "Invalid jog command: jog command has no '=' or contains prohibited G-code",
    17: "Setting disabled: laser mode requires PWM output",
    20: "Unsupported command: unsupported or invalid G-code command found in block",
    21: "Modal group violation: more than one G-code command from the same modal group",
    22: "Undefined feed rate: feed rate has not yet been set or is undefined",
    23: "Invalid gcode ID:23: G-code command in block requires an integer value",
    24: "Invalid gcode ID:24: more than one G-code command that requires axis words found in block",
    25: "Invalid gcode ID:25: repeated G-code word found in block",
    26: "Invalid gcode ID:26: no axis words found in block for G-code command that requires them",
    27: "Invalid gcode ID:27: line number value is invalid",
    28: "Invalid gcode ID:28: G-code command is missing a required value word",
    29: "Invalid gcode ID:29: G59.x work coordinate systems are not supported",
    30: "Invalid gcode ID:30: G53 only allowed with G0 and G1 motion modes",
    31: "Invalid gcode ID:31: axis words found in block when no command or current modal state uses them",
    32: "Invalid gcode ID:32: G2 and G3 arcs require at least one in-plane axis word",
    33: "Invalid gcode ID:33: motion command target is invalid",
    34: "Invalid gcode ID:34: arc radius value is invalid",
    35: "Invalid gcode ID:35: G2 and G3 arcs require at least one in-plane offset word",
    36: "Invalid gcode ID:36: unused value words found in block",
    37: "Invalid gcode ID:37: G43.1 dynamic tool length offset is not assigned to configured tool length axis",
    38: "Invalid gcode ID:38: tool number greater than max supported value",
}

#: ``ALARM:n`` meanings (``doc/csv/alarm_codes_en_US.csv``).
ALARM_CODES: Mapping[int, str] = {
    1: "Hard limit: hard limit triggered; machine position is likely lost, re-homing is highly recommended",
    2: "Soft limit: G-code motion target exceeds machine travel; machine position retained, unlock is safe",
    3: "Abort during cycle: reset while in motion; machine position is likely lost, re-homing is recommended",
    4: "Probe fail: the probe is not in the expected initial state before starting the probe cycle",
    5: "Probe fail: the probe did not contact the workpiece within the programmed travel",
    6: "Homing fail: reset during active homing cycle",
    7: "Homing fail: safety door was opened during active homing cycle",
    8: "Homing fail: cycle failed to clear limit switch when pulling off",
    9: "Homing fail: could not find limit switch within search distance",
    10: "Homing fail: on dual axis machines, could not find the second limit switch for self-squaring",
}

#: Settings the bridge cares about, with their meaning (``doc/csv/setting_codes_en_US.csv``).
SETTING_NAMES: Mapping[int, str] = {
    0: "Step pulse time, microseconds",
    1: "Step idle delay, milliseconds",
    2: "Step pulse invert, mask",
    3: "Step direction invert, mask",
    4: "Invert step enable pin, boolean",
    5: "Invert limit pins, boolean",
    6: "Invert probe pin, boolean",
    10: "Status report options, mask",
    11: "Junction deviation, millimeters",
    12: "Arc tolerance, millimeters",
    13: "Report in inches, boolean",
    20: "Soft limits enable, boolean",
    21: "Hard limits enable, boolean",
    22: "Homing cycle enable, boolean",
    23: "Homing direction invert, mask",
    24: "Homing locate feed rate, mm/min",
    25: "Homing search seek rate, mm/min",
    26: "Homing switch debounce delay, milliseconds",
    27: "Homing switch pull-off distance, millimeters",
    30: "Maximum spindle speed, RPM",
    31: "Minimum spindle speed, RPM",
    32: "Laser-mode enable, boolean",
    100: "X-axis steps per millimeter",
    101: "Y-axis steps per millimeter",
    102: "Z-axis steps per millimeter",
    110: "X-axis maximum rate, mm/min",
    111: "Y-axis maximum rate, mm/min",
    112: "Z-axis maximum rate, mm/min",
    120: "X-axis acceleration, mm/sec^2",
    121: "Y-axis acceleration, mm/sec^2",
    122: "Z-axis acceleration, mm/sec^2",
    130: "X-axis maximum travel, millimeters",
    131: "Y-axis maximum travel, millimeters",
    132: "Z-axis maximum travel, millimeters",
}


def error_meaning(code: int) -> str:
    """The meaning of ``error:code``; forks (grblHAL) add codes, so unknown ones get a generic text."""
    return ERROR_CODES.get(code, f"Unknown error {code} (not in the GRBL 1.1 table)")


def alarm_meaning(code: int) -> str:
    """The meaning of ``ALARM:code``; unknown codes (forks) get a generic text."""
    return ALARM_CODES.get(code, f"Unknown alarm {code} (not in the GRBL 1.1 table)")


# --- parsed lines ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Ok:
    """``ok``: the oldest unacknowledged line was accepted."""


@dataclasses.dataclass(frozen=True)
class Error:
    """``error:n``: the oldest unacknowledged line was rejected (and purged)."""

    code: int

    @property
    def meaning(self) -> str:
        return error_meaning(self.code)


@dataclasses.dataclass(frozen=True)
class Alarm:
    """``ALARM:n``: Grbl is now in the alarm state."""

    code: int

    @property
    def meaning(self) -> str:
        return alarm_meaning(self.code)


@dataclasses.dataclass(frozen=True)
class Welcome:
    """``Grbl 1.1h ['$' for help]``: a fresh initialisation or reset; the RX buffer is empty."""

    version: str


@dataclasses.dataclass(frozen=True)
class Message:
    """A bracketed push or queried message: ``[MSG:…]``, ``[GC:…]``, ``[VER:…]``, ``[G54:…]``…"""

    kind: str  # "MSG", "GC", "HLP", "VER", "OPT", "echo", "G54", "PRB", …
    text: str


@dataclasses.dataclass(frozen=True)
class Setting:
    """``$n=value`` from a ``$$`` listing."""

    number: int
    value: float


@dataclasses.dataclass(frozen=True)
class StartupLine:
    """``>G54G20:ok`` or ``>G54G20:error:n``: a startup line ran (not part of the stream count)."""

    line: str
    error: int | None


@dataclasses.dataclass(frozen=True)
class Unknown:
    """Anything else (noise, half lines after a reset, fork-specific output)."""

    text: str


@dataclasses.dataclass(frozen=True)
class StatusReport:
    """One ``<…>`` real-time status report.

    Only ``state`` and one position are guaranteed; every other field is ``None`` when absent.
    ``fields`` keeps every raw ``name:value`` pair, including ones this class does not know.
    """

    state: str  # "Idle", "Run", "Hold", "Jog", "Alarm", "Door", "Check", "Home", "Sleep" (or a fork's)
    substate: int | None = None
    mpos: tuple[float, ...] | None = None
    wpos: tuple[float, ...] | None = None
    wco: tuple[float, ...] | None = None
    planner_blocks_free: int | None = None
    rx_bytes_free: int | None = None
    line_number: int | None = None
    feed: float | None = None
    spindle: float | None = None
    pins: str | None = None
    overrides: tuple[int, int, int] | None = None  # feed %, rapid %, spindle %
    accessories: str | None = None  # "S", "C", "F", "M" letters; "" when Ov came without A:
    fields: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def work_position(self, wco: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """Work position: ``WPos`` when reported, else ``MPos − WCO`` (``wco``: last known, or this one's)."""
        if self.wpos is not None:
            return self.wpos
        offset = self.wco if self.wco is not None else wco
        if self.mpos is None or offset is None:
            return None
        return tuple(m - o for m, o in zip(self.mpos, offset, strict=False))

    def machine_position(self, wco: tuple[float, ...] | None) -> tuple[float, ...] | None:
        """Machine position: ``MPos`` when reported, else ``WPos + WCO``."""
        if self.mpos is not None:
            return self.mpos
        offset = self.wco if self.wco is not None else wco
        if self.wpos is None or offset is None:
            return None
        return tuple(w + o for w, o in zip(self.wpos, offset, strict=False))


class StatusParseError(ValueError):
    """A ``<…>`` line that is not a valid status report."""


def _floats(value: str, name: str) -> tuple[float, ...]:
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError as exc:
        raise StatusParseError(f"{name}: not a list of numbers: {value!r}") from exc
    return numbers


def _ints(value: str, name: str, count: int) -> tuple[int, ...]:
    try:
        numbers = tuple(int(float(part)) for part in value.split(","))
    except ValueError as exc:
        raise StatusParseError(f"{name}: not a list of integers: {value!r}") from exc
    if len(numbers) < count:
        raise StatusParseError(f"{name}: expected {count} values, got {value!r}")
    return numbers


def parse_status(line: str) -> StatusReport:
    """Parse ``<State|MPos:…|…>``: any field order after the state, optional fields absent.

    Raises :class:`StatusParseError` when the line is not a well-formed report.
    """
    text = line.strip()
    if not (text.startswith("<") and text.endswith(">")) or len(text) < 3:
        raise StatusParseError(f"not a status report: {line!r}")
    parts = text[1:-1].split("|")
    state_field = parts[0]
    if not state_field or not state_field[0].isalpha():
        raise StatusParseError(f"missing machine state: {line!r}")
    state, _, sub = state_field.partition(":")
    substate: int | None = None
    if sub:
        try:
            substate = int(sub)
        except ValueError as exc:
            raise StatusParseError(f"bad sub-state {sub!r} in {line!r}") from exc
    values: dict[str, object] = {}
    raw: dict[str, str] = {}
    for part in parts[1:]:
        name, sep, value = part.partition(":")
        if not sep:
            raise StatusParseError(f"field without ':' {part!r} in {line!r}")
        raw[name] = value
        if name == "MPos":
            values["mpos"] = _floats(value, name)
        elif name == "WPos":
            values["wpos"] = _floats(value, name)
        elif name == "WCO":
            values["wco"] = _floats(value, name)
        elif name == "Bf":
            blocks, rx = _ints(value, name, 2)[:2]
            values["planner_blocks_free"] = blocks
            values["rx_bytes_free"] = rx
        elif name == "Ln":
            values["line_number"] = _ints(value, name, 1)[0]
        elif name == "FS":
            numbers = _floats(value, name)
            if len(numbers) < 2:
                raise StatusParseError(f"FS: expected feed,speed, got {value!r}")
            values["feed"], values["spindle"] = numbers[0], numbers[1]
        elif name == "F":
            values["feed"] = _floats(value, name)[0]
        elif name == "Pn":
            values["pins"] = value
        elif name == "Ov":
            feed, rapid, spindle = _ints(value, name, 3)[:3]
            values["overrides"] = (feed, rapid, spindle)
        elif name == "A":
            values["accessories"] = value
        # Unknown names (forks, later versions) stay in ``raw`` only.
    if "mpos" not in values and "wpos" not in values:
        raise StatusParseError(f"no MPos or WPos in {line!r}")
    if "overrides" in values and "accessories" not in values:
        # ``A:`` is sent only with ``Ov`` and only when something is on: Ov without A means all off.
        values["accessories"] = ""
    return StatusReport(state=state, substate=substate, fields=raw, **values)  # type: ignore[arg-type]


_WELCOME_RE = re.compile(r"^Grbl (\S+) \['\$' for help\]$")
_SETTING_RE = re.compile(r"^\$(\d+)=(-?[0-9.]+)")
_BRACKET_RE = re.compile(r"^\[([A-Za-z0-9.]+):(.*)\]$")

ParsedLine = Ok | Error | Alarm | Welcome | Message | Setting | StartupLine | StatusReport | Unknown


def parse_line(line: str) -> ParsedLine:
    """Classify one line received from GRBL (terminator already stripped). Never raises."""
    text = line.strip()
    if text == "ok":
        return Ok()
    if text.startswith("error:"):
        try:
            return Error(int(text[6:]))
        except ValueError:
            return Unknown(text)
    if text.startswith("ALARM:"):
        try:
            return Alarm(int(text[6:]))
        except ValueError:
            return Unknown(text)
    if text.startswith("<"):
        try:
            return parse_status(text)
        except StatusParseError:
            return Unknown(text)
    match = _WELCOME_RE.match(text)
    if match:
        return Welcome(match.group(1))
    if text.startswith("["):
        match = _BRACKET_RE.match(text)
        if match:
            return Message(match.group(1), match.group(2))
        return Unknown(text)
    match = _SETTING_RE.match(text)
    if match:
        try:
            return Setting(int(match.group(1)), float(match.group(2)))
        except ValueError:
            return Unknown(text)
    if text.startswith(">"):
        body = text[1:]
        if body.endswith(":ok"):
            return StartupLine(body[:-3], None)
        head, sep, code = body.rpartition(":error:")
        if sep:
            try:
                return StartupLine(head, int(code))
            except ValueError:
                return Unknown(text)
    return Unknown(text)


def is_ack(parsed: ParsedLine) -> bool:
    """True for ``ok`` and ``error:n``: the replies that retire one line of a character-counted stream."""
    return isinstance(parsed, Ok | Error)


# --- outgoing lines ------------------------------------------------------------------------------------

_COMMENT_PAREN_RE = re.compile(r"\([^)]*\)")


def clean_gcode_line(line: str) -> str:
    """Strip comments and surrounding whitespace from one G-code line for streaming.

    Removes ``(…)`` and ``;…`` comments (GRBL ignores them anyway, and they cost RX-buffer bytes).
    Returns ``""`` for a line that carries nothing, which the streamer skips.
    """
    text = line.split(";", 1)[0]
    text = _COMMENT_PAREN_RE.sub("", text)
    return text.strip()


def state_name(report: StatusReport) -> str:
    """``Hold:0`` style display name of the report's state."""
    return report.state if report.substate is None else f"{report.state}:{report.substate}"
