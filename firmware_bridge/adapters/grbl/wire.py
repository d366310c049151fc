"""GRBL 1.1 on the wire, as the bridge reads it: pure parsing of what the controller sends.

No I/O here: the adapter, the pass-through and the file sender share these parsers. The simulator does
not: it shares only :mod:`firmware_bridge.adapters.grbl.facts` (byte values, buffer sizes, code
tables), so that a parsing bug cannot hide on both sides of a test. Source: ``gnea/grbl``
``doc/markdown/interface.md``.

Every parse function accepts one line *without* its line terminator and never raises on garbage:
:func:`parse_line` returns an :class:`Unknown` for anything it does not recognise, because a device
hiccup (a half line after a reset, line noise) must never kill the reader thread.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from firmware_bridge.adapters.grbl.facts import WELCOME_FORMAT, alarm_meaning, error_meaning

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


#: ``Grbl 1.1h ['$' for help]``: the welcome of :data:`~firmware_bridge.adapters.grbl.facts.WELCOME_FORMAT`.
_WELCOME_RE = re.compile("^" + re.escape(WELCOME_FORMAT).replace(re.escape("{version}"), r"(\S+)") + "$")
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
