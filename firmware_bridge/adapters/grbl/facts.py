"""Facts of the GRBL 1.1 firmware that both the adapter and the simulator need: no parsing, no I/O.

Byte values, buffer sizes, state names and the code tables, each as ``gnea/grbl`` defines it. The
adapter's parser (:mod:`firmware_bridge.adapters.grbl.wire`) and the simulator
(:mod:`firmware_bridge.simulators.grbl`) each read and write the wire format with their own code and
share only these facts, so a parsing bug cannot hide by being on both sides of a test.

Sources, in ``gnea/grbl`` (v1.1h): ``grbl/config.h`` (the ``CMD_*`` realtime bytes),
``grbl/serial.h`` (``RX_BUFFER_SIZE``), ``grbl/protocol.h`` (``LINE_BUFFER_SIZE``), ``grbl/report.c``
(the welcome line and the state names of a status report), ``doc/csv/error_codes_en_US.csv``,
``doc/csv/alarm_codes_en_US.csv`` and ``doc/csv/setting_codes_en_US.csv``; the protocol itself in
``doc/markdown/interface.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

# --- realtime bytes (never buffered, no newline; grbl/config.h CMD_*) -------------------------------

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
#: Characters of one line GRBL keeps (``grbl/protocol.h``); a longer line is answered ``error:11``.
LINE_BUFFER_SIZE = 80

#: The welcome line after a power-up or reset (``grbl/report.c``, ``report_init_message``).
WELCOME_FORMAT = "Grbl {version} ['$' for help]"

#: The machine states a status report names (``grbl/report.c``, ``report_realtime_status``).
STATES = ("Idle", "Run", "Hold", "Jog", "Alarm", "Door", "Check", "Home", "Sleep")


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
