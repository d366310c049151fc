"""The MQTT contract, version 1: topics and payloads as typed objects.

This module is the only place in the project that spells a topic. The bridge
(``firmware_bridge``) and the server's hub (``devices``) both import it, so it
holds both directions: encoders and decoders for every message either side
sends. It depends on the standard library only (no Django, no paho).

Topics (``{lab}`` and ``{machine}`` are slugs, ``{bridge}`` a bridge id, all
matching ``[a-z0-9][a-z0-9-]{0,62}``)::

    fablab/v1/{lab}/{machine}/status      bridge -> server  QoS 1  retained   Status
    fablab/v1/{lab}/{machine}/telemetry   bridge -> server  QoS 1  -          Telemetry
    fablab/v1/{lab}/{machine}/event       bridge -> server  QoS 1  -          Event
    fablab/v1/{lab}/{machine}/cmd         server -> bridge  QoS 1  never      Command
    fablab/v1/{lab}/{machine}/cmd/ack     bridge -> server  QoS 1  -          CommandAck
    fablab/v1/_bridges/{bridge}/online    bridge -> server  QoS 1  retained   BridgeOnline (and the Last Will)

Payloads are UTF-8 JSON objects with ``"v": 1`` and at most 16 KiB
(:data:`MAX_PAYLOAD_BYTES`). ``ts`` is milliseconds since the Unix epoch, taken
on the bridge when the reading was made. Unknown fields are ignored by the
decoders (a newer sender may add some); a wrong known field raises
:class:`ProtocolError` whose message names the field.

Bounds (``hardware_docs/mqtt-contract.md`` states them too): a reading is a finite number
with an absolute value of at most :data:`MAX_READING` (2**53, the largest integer a float
holds exactly); a telemetry message holds at most :data:`MAX_READINGS` readings and a
machine at most :data:`MAX_READING_NAMES` distinct names (the hub enforces that one);
``seq`` and the counters are below 2**63; a ``ts`` lies between the epoch and the year
9999, and a receiver that passes ``now_ms`` to a decoder also refuses a ``ts`` more than
:data:`MAX_FUTURE_SKEW_MS` ahead of its clock or more than :data:`MAX_AGE_MS` behind it;
free JSON (``detail``, ``params``) nests at most :data:`MAX_DEPTH` levels. Every breach is a
:class:`ProtocolError`; no other exception leaves a decoder.

``sid``/``seq``: telemetry and events carry the bridge spool's id (``sid``, a
UUID made when the spool file is created) and a per-machine counter (``seq``)
that never repeats for the life of that spool. The server de-duplicates on
(machine, ``sid``, ``seq``): the same key twice is a replay, a hole in ``seq``
is lost data, and a new ``sid`` is a new spool (never a replay).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

VERSION = 1
PREFIX = "fablab/v1"
BRIDGES = "_bridges"  # the reserved lab level of bridge topics; never a valid slug (leading "_")
MAX_PAYLOAD_BYTES = 16 * 1024
QOS = 1

SLUG_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: Names of telemetry values, event types and adapters: lower-case identifiers.
NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
#: Command ids: a UUID is what the server sends; any short printable token is accepted.
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
SHARE_GROUP_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Largest absolute value of a reading: 2**53, the largest integer a float (and so an InfluxDB
#: float field) holds exactly. No real reading comes near it (a lifetime energy counter of a
#: 10 kW machine is below 10**9 Wh); above it lies garbage, or an integer float() cannot convert.
MAX_READING = 2**53
#: Readings in one telemetry message (the vocabulary has 16 names; a plug or a CNC adds a few).
MAX_READINGS = 64
#: Distinct reading names one machine may have; the hub drops (and counts) names beyond it, since
#: every new name widens the InfluxDB measurement's schema and the machine's live readings for good.
MAX_READING_NAMES = 64
#: Integers stored in the database (``seq``, the spool counters) and in free JSON: signed 64-bit.
MAX_INT = 2**63 - 1
#: The last millisecond of the year 9999: the largest ``ts`` a date can hold.
MAX_TS_MS = 253_402_300_799_999
#: How far a ``ts`` may lie ahead of the receiver's clock (clocks of bridges and server differ a
#: little even with NTP). Further ahead is a wrong clock: such a status would look newer than
#: every real one that follows.
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
#: How far back a ``ts`` is accepted. The bridge's spool is bounded by count, not age
#: (``spool_max_messages``, 200,000 by default): that is 23 days of one machine reporting every
#: 10 s, and longer with a slower poll or a larger spool. A year covers any outage a spool can
#: bridge with room to spare; a ``ts`` older than that comes from a clock that was never set
#: (a Raspberry Pi without network time starts in 1970), not from a spool.
MAX_AGE_MS = 366 * 24 * 3600 * 1000
#: Nesting levels allowed in the free JSON of ``detail`` and ``params``.
MAX_DEPTH = 32

# Machine states.
OFFLINE = "offline"
IDLE = "idle"
RUNNING = "running"
PAUSED = "paused"
ERROR = "error"
STATES = (OFFLINE, IDLE, RUNNING, PAUSED, ERROR)

# Command actions. A *capability* is an action's name: a status's ``capabilities`` lists the actions
# the machine carries out, so the server offers (and sends) only those.
ENABLE = "enable"
DISABLE = "disable"
PAUSE = "pause"
RESUME = "resume"
CANCEL = "cancel"
ACTIONS = (ENABLE, DISABLE, PAUSE, RESUME, CANCEL)
#: The interlock's actions: a bridge declares them for a machine with ``interlock = true`` only.
INTERLOCK_ACTIONS = (ENABLE, DISABLE)
#: The actions on a running job.
JOB_ACTIONS = (PAUSE, RESUME, CANCEL)
#: What each adapter shipped with contract v1 could do before ``status.capabilities`` existed
#: (interlock actions aside). The server falls back on it for a bridge that sends no
#: ``capabilities``; an adapter name not listed here is offered no job action.
LEGACY_CAPABILITIES: dict[str, tuple[str, ...]] = {
    "octoprint": JOB_ACTIONS,
    "grbl": JOB_ACTIONS,
    "counter": JOB_ACTIONS,
    "tasmota": (),
    "shelly": (),
}
#: Most capabilities a status may list (a newer contract may add actions; not without end).
MAX_CAPABILITIES = 32


def machine_capabilities(adapter_actions: tuple[str, ...] | list[str], *, interlock: bool) -> tuple[str, ...]:
    """The capabilities of a machine: its adapter's job actions, plus the interlock's when it has one.

    In :data:`ACTIONS` order, each once; names that are not actions (or interlock actions an
    adapter listed itself) are left out, since only the interlock configuration grants those.
    """
    wanted = {a for a in adapter_actions if a in JOB_ACTIONS}
    if interlock:
        wanted.update(INTERLOCK_ACTIONS)
    return tuple(a for a in ACTIONS if a in wanted)


# Ack error codes.
EXPIRED = "expired"
UNSUPPORTED = "unsupported"
INVALID_STATE = "invalid_state"
DEVICE_ERROR = "device_error"
INVALID = "invalid"
NOT_CONFIRMED = "not_confirmed"  # sent, but the machine did not report the change within its bound
ACK_CODES = (EXPIRED, UNSUPPORTED, INVALID_STATE, DEVICE_ERROR, INVALID, NOT_CONFIRMED)

#: Event types the project's adapters emit. The vocabulary is open: any NAME_RE is accepted.
EVENT_TYPES = (
    "job_started",
    "job_finished",
    "job_failed",
    "job_cancelled",
    "alarm",
    "door_opened",
    "door_closed",
    "power_on",
    "power_off",
)

#: Telemetry names with units in the name. Open vocabulary: adapters may add NAME_RE names.
TELEMETRY_NAMES = (
    "temp_nozzle_c",
    "temp_nozzle_target_c",
    "temp_bed_c",
    "temp_bed_target_c",
    "progress_pct",
    "print_time_s",
    "print_time_left_s",
    "power_w",
    "energy_wh",
    "feed_mm_min",
    "spindle_rpm",
    "laser_power_pct",
    "pos_x_mm",
    "pos_y_mm",
    "pos_z_mm",
    "feed_override_pct",
)

# Topic kinds, as returned by parse_topic().
STATUS = "status"
TELEMETRY = "telemetry"
EVENT = "event"
CMD = "cmd"
CMD_ACK = "cmd/ack"
ONLINE = "online"
MACHINE_KINDS = (STATUS, TELEMETRY, EVENT, CMD, CMD_ACK)


class ProtocolError(ValueError):
    """A topic or payload that breaks contract v1; the message names the field."""


# --------------------------------------------------------------------------- topics


def is_slug(value: object) -> bool:
    """True when ``value`` is a string matching ``[a-z0-9][a-z0-9-]{0,62}``."""
    return isinstance(value, str) and SLUG_RE.fullmatch(value) is not None


def _slug(value: object, field: str) -> str:
    if not is_slug(value):
        raise ProtocolError(f"{field}: must be a slug matching [a-z0-9][a-z0-9-]{{0,62}}, got {_show(value)}")
    return value  # type: ignore[return-value]


def _machine_topic(lab: str, machine: str, kind: str) -> str:
    return f"{PREFIX}/{_slug(lab, 'lab')}/{_slug(machine, 'machine')}/{kind}"


def topic_status(lab: str, machine: str) -> str:
    """``fablab/v1/{lab}/{machine}/status`` (retained)."""
    return _machine_topic(lab, machine, STATUS)


def topic_telemetry(lab: str, machine: str) -> str:
    """``fablab/v1/{lab}/{machine}/telemetry``."""
    return _machine_topic(lab, machine, TELEMETRY)


def topic_event(lab: str, machine: str) -> str:
    """``fablab/v1/{lab}/{machine}/event``."""
    return _machine_topic(lab, machine, EVENT)


def topic_cmd(lab: str, machine: str) -> str:
    """``fablab/v1/{lab}/{machine}/cmd`` (never retained)."""
    return _machine_topic(lab, machine, CMD)


def topic_cmd_ack(lab: str, machine: str) -> str:
    """``fablab/v1/{lab}/{machine}/cmd/ack``."""
    return _machine_topic(lab, machine, CMD_ACK)


def topic_bridge_online(bridge: str) -> str:
    """``fablab/v1/_bridges/{bridge}/online`` (retained; also the Last Will's topic)."""
    return f"{PREFIX}/{BRIDGES}/{_slug(bridge, 'bridge')}/{ONLINE}"


class ParsedTopic(NamedTuple):
    """What a contract topic names.

    For machine topics ``lab`` and ``machine`` are the slugs. For a bridge's
    ``online`` topic, ``lab`` is ``None`` and ``machine`` holds the bridge id
    (also available as :attr:`bridge`).
    """

    kind: str
    lab: str | None
    machine: str

    @property
    def bridge(self) -> str | None:
        return self.machine if self.kind == ONLINE else None


def parse_topic(topic: str) -> ParsedTopic:
    """Split a contract topic into ``(kind, lab, machine)``; raise :class:`ProtocolError` otherwise."""
    if not isinstance(topic, str):
        raise ProtocolError(f"topic: must be a string, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) < 5 or "/".join(parts[:2]) != PREFIX:
        raise ProtocolError(f"topic: not a contract v1 topic: {_show(topic)}")
    if parts[2] == BRIDGES:
        if len(parts) == 5 and parts[4] == ONLINE:
            return ParsedTopic(ONLINE, None, _slug(parts[3], "topic bridge"))
        raise ProtocolError(f"topic: unknown bridge topic: {_show(topic)}")
    lab = _slug(parts[2], "topic lab")
    machine = _slug(parts[3], "topic machine")
    kind = "/".join(parts[4:])
    if kind not in MACHINE_KINDS:
        raise ProtocolError(f"topic: unknown kind {_show(kind)} in {_show(topic)}")
    return ParsedTopic(kind, lab, machine)


# ------------------------------------------------------------------ subscription filters


def _filter(lab: str | None, machine: str | None, kind: str) -> str:
    lab_level = "+" if lab is None else _slug(lab, "lab")
    machine_level = "+" if machine is None else _slug(machine, "machine")
    return f"{PREFIX}/{lab_level}/{machine_level}/{kind}"


def filter_all_status(lab: str | None = None) -> str:
    """Every machine's status (of one lab, or all). Retained: never use it under ``$share``."""
    return _filter(lab, None, STATUS)


def filter_all_telemetry(lab: str | None = None) -> str:
    """Every machine's telemetry (of one lab, or all)."""
    return _filter(lab, None, TELEMETRY)


def filter_all_events(lab: str | None = None) -> str:
    """Every machine's events (of one lab, or all)."""
    return _filter(lab, None, EVENT)


def filter_all_cmd_acks(lab: str | None = None) -> str:
    """Every machine's command acknowledgements (of one lab, or all)."""
    return _filter(lab, None, CMD_ACK)


def filter_all_cmds(lab: str | None = None) -> str:
    """Every machine's commands (diagnostics; a bridge subscribes to its own machines' topics)."""
    return _filter(lab, None, CMD)


def filter_all_online() -> str:
    """Every bridge's online flag. Retained: never use it under ``$share``."""
    return f"{PREFIX}/{BRIDGES}/+/{ONLINE}"


def filter_machine(lab: str, machine: str) -> str:
    """Everything about one machine (``fablab/v1/{lab}/{machine}/#``)."""
    return f"{PREFIX}/{_slug(lab, 'lab')}/{_slug(machine, 'machine')}/#"


def filter_everything() -> str:
    """Every contract v1 topic (``fablab/v1/#``), for tools and tests."""
    return f"{PREFIX}/#"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription ``$share/{group}/{filter}``.

    Brokers do not send retained messages to shared subscriptions, so use it
    for the streams (telemetry, events, acks), not for status or online.
    """
    if not isinstance(group, str) or SHARE_GROUP_RE.fullmatch(group) is None:
        raise ProtocolError(f"group: must match [A-Za-z0-9_-]{{1,64}}, got {_show(group)}")
    return f"$share/{group}/{topic_filter}"


def unshare(topic_filter: str) -> str:
    """The plain filter inside ``$share/{group}/{filter}`` (unchanged when not shared)."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        if len(parts) == 3:
            return parts[2]
    return topic_filter


def server_subscriptions(group: str | None = "hub") -> list[str]:
    """The filters a server-side consumer subscribes to, all at QoS 1.

    Streams go through ``$share/{group}/`` when ``group`` is given so several
    workers split them; the retained ``status`` and ``online`` topics are always
    plain subscriptions (every worker needs them, and shared ones get no
    retained messages).
    """
    streams = [filter_all_telemetry(), filter_all_events(), filter_all_cmd_acks()]
    if group is not None:
        streams = [shared(group, f) for f in streams]
    return [filter_all_status(), filter_all_online(), *streams]


# ------------------------------------------------------------------------ validation


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message never echoes 16 KiB back."""
    if _is_int(value) and value.bit_length() > 200:  # type: ignore[union-attr]
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"  # type: ignore[union-attr]
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(value: object, field: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    if not _is_int(value):
        raise ProtocolError(f"{field}: must be an integer, got {_show(value)}")
    if value < minimum:  # type: ignore[operator]
        raise ProtocolError(f"{field}: must be >= {minimum}, got {_show(value)}")
    if value > maximum:  # type: ignore[operator]
        raise ProtocolError(f"{field}: must be <= {maximum}, got {_show(value)}")
    return value  # type: ignore[return-value]


def _ts(value: object, field: str = "ts") -> int:
    return _int(value, field, minimum=0, maximum=MAX_TS_MS)


def check_ts(ts: int, now_ms: int, field: str = "ts") -> int:
    """Refuse a ``ts`` more than :data:`MAX_FUTURE_SKEW_MS` ahead of ``now_ms`` or :data:`MAX_AGE_MS` behind.

    The receiver's check (the hub passes its clock to the decoders); returns ``ts``.
    """
    if ts > now_ms + MAX_FUTURE_SKEW_MS:
        raise ProtocolError(
            f"{field}: {ts} is {(ts - now_ms) / 1000:.0f} s ahead of the receiver's clock "
            f"(at most {MAX_FUTURE_SKEW_MS // 1000} s allowed): is the sender's clock right?"
        )
    if ts < now_ms - MAX_AGE_MS:
        raise ProtocolError(
            f"{field}: {ts} is more than {MAX_AGE_MS // 86_400_000} days old: is the sender's clock right?"
        )
    return ts


def _number(value: object, field: str, *, bound: int = MAX_READING) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{field}: must be a number, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{field}: must be finite, got {value!r}")
    if not -bound <= value <= bound:
        raise ProtocolError(f"{field}: must be between -{bound} and {bound}, got {_show(value)}")
    return value


def reading_problem(name: object, value: object) -> str | None:
    """Why ``name``/``value`` is not a valid reading (a message naming the field), or None when it is.

    The one rule for a reading, used by the bridge before it publishes and by the decoder.
    """
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        return f"values: reading name {_show(name)} must match [a-z][a-z0-9_]{{0,63}}"
    try:
        _number(value, f"values.{name}")
    except ProtocolError as exc:
        return str(exc)
    return None


#: Characters no text field may carry into the server: NUL (PostgreSQL refuses it in text and
#: jsonb), the other C0 controls but tab, newline and carriage return, DEL, and lone UTF-16
#: surrogates (valid as JSON escapes, but no database or encoder accepts them as text).
_BAD_TEXT_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
#: In identifiers and codes no control character at all is allowed (tab and newline included).
_BAD_ID_RE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
#: What a bad character in free text (a job name, an error message) becomes.
REPLACEMENT_CHAR = "\ufffd"


def clean_text(value: str) -> str:
    """``value`` with every character of :data:`_BAD_TEXT_RE` replaced by U+FFFD."""
    return value if _BAD_TEXT_RE.search(value) is None else _BAD_TEXT_RE.sub(REPLACEMENT_CHAR, value)


def _str(
    value: object, field: str, *, max_len: int = 1024, allow_empty: bool = True, free_text: bool = False
) -> str:
    """A string field. Control characters and lone surrogates are refused in identifiers and codes;
    in ``free_text`` (names and messages people read) they are replaced, so that one odd character
    in a file name never costs the machine its status."""
    if not isinstance(value, str):
        raise ProtocolError(f"{field}: must be a string, got {_show(value)}")
    if len(value) > max_len:
        raise ProtocolError(f"{field}: longer than {max_len} characters")
    if not allow_empty and not value:
        raise ProtocolError(f"{field}: must not be empty")
    if free_text:
        return clean_text(value)
    if _BAD_ID_RE.search(value) is not None:
        raise ProtocolError(f"{field}: control characters and lone surrogates are not allowed")
    return value


def _bool(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{field}: must be true or false, got {_show(value)}")
    return value


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or NAME_RE.fullmatch(value) is None:
        raise ProtocolError(f"{field}: must match [a-z][a-z0-9_]{{0,63}}, got {_show(value)}")
    return value


@functools.lru_cache(maxsize=4096)
def _canonical_uuid(value: str) -> str | None:
    # A spool id repeats in every message of a machine: parse it once (the hub's hot path).
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _sid(value: object, field: str = "sid") -> str:
    canonical = _canonical_uuid(value) if isinstance(value, str) else None
    if canonical is None:
        raise ProtocolError(f"{field}: must be a UUID string, got {_show(value)}")
    return canonical


def _id(value: object, field: str = "id") -> str:
    if not isinstance(value, str) or ID_RE.fullmatch(value) is None:
        raise ProtocolError(f"{field}: must be an id (a UUID), got {_show(value)}")
    return value


def _obj(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{field}: must be an object, got {_show(value)}")
    return value


def _clean_json(value: Any, depth: int = 0) -> Any:
    """A copy of free-form JSON (``detail``, ``params``) whose strings, keys included, went through
    :func:`clean_text`. Depth is bounded by :func:`_check_json_numbers` afterwards; here it only
    stops the copy from recursing without end."""
    if isinstance(value, str):
        return clean_text(value)
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            (clean_text(k) if isinstance(k, str) else k): _clean_json(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_clean_json(v, depth + 1) for v in value]
    return value


def _check_json_numbers(value: object, field: str, depth: int = 0) -> None:
    """Check a free-form structure (``detail``, ``params``): finite floats, 64-bit integers, string
    keys, at most :data:`MAX_DEPTH` levels."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"{field}: must be finite, got {value!r}")
    if _is_int(value) and not -MAX_INT - 1 <= value <= MAX_INT:  # type: ignore[operator]
        raise ProtocolError(f"{field[:200]}: integers must fit in 64 bits, got {_show(value)}")
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        raise ProtocolError(f"{field[:200]}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ProtocolError(f"{field[:200]}: keys must be strings")
            _check_json_numbers(v, f"{field}.{k[:40]}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json_numbers(v, f"{field}[{i}]", depth + 1)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise ProtocolError(f"{field[:200]}: not JSON: {type(value).__name__}")


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"payload: {name} is not allowed (numbers must be finite)")


#: One decoder for every payload (``json.loads`` with options builds a new one per call).
_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def load_payload(payload: bytes | bytearray | str) -> dict[str, Any]:
    """Parse a payload into a JSON object with ``"v": 1``, enforcing the size limit."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, bytes | bytearray):
        raise ProtocolError(f"payload: must be bytes, got {type(payload).__name__}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload: {len(payload)} bytes, more than {MAX_PAYLOAD_BYTES}")
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"payload: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        data = _JSON_DECODER.decode(text)
    except ProtocolError:
        raise  # NaN or Infinity (parse_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            f"payload: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise ProtocolError("payload: nested too deeply") from None
    except ValueError as exc:
        # An integer of more than 4,300 digits (sys.get_int_max_str_digits()): json raises a bare
        # ValueError, not a JSONDecodeError.
        raise ProtocolError(f"payload: not JSON we accept ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise ProtocolError("payload: must be a JSON object")
    if "v" not in data:
        raise ProtocolError("v: missing")
    if not _is_int(data["v"]) or data["v"] != VERSION:
        raise ProtocolError(f"v: must be {VERSION}, got {_show(data['v'])}")
    return data


def _required(data: Mapping[str, Any], field: str) -> Any:
    if field not in data:
        raise ProtocolError(f"{field}: missing")
    return data[field]


def _dumps(data: Mapping[str, Any]) -> bytes:
    try:
        raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise ProtocolError(f"payload: {exc}") from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload: {len(raw)} bytes, more than {MAX_PAYLOAD_BYTES}")
    return raw


# -------------------------------------------------------------------------- messages


@dataclasses.dataclass(frozen=True)
class Job:
    """A job: ``id``, ``name``, ``started_ts`` (epoch ms) and ``progress_pct`` (0-100 or null)."""

    id: str
    name: str
    started_ts: int
    progress_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "started_ts": self.started_ts,
            "progress_pct": self.progress_pct,
        }

    @classmethod
    def from_dict(cls, data: object, field: str = "job") -> Job:
        obj = _obj(data, field)
        progress = obj.get("progress_pct")
        if progress is not None:
            progress = _number(progress, f"{field}.progress_pct")
        return cls(
            id=_str(_required_in(obj, "id", field), f"{field}.id", max_len=256),
            name=_str(_required_in(obj, "name", field), f"{field}.name", max_len=1024, free_text=True),
            started_ts=_ts(_required_in(obj, "started_ts", field), f"{field}.started_ts"),
            progress_pct=progress,
        )


@dataclasses.dataclass(frozen=True)
class MachineError:
    """A machine fault in ``status.error``: ``code`` and human ``message``."""

    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_dict(cls, data: object, field: str = "error") -> MachineError:
        obj = _obj(data, field)
        return cls(
            code=_str(_required_in(obj, "code", field), f"{field}.code", max_len=64, allow_empty=False),
            message=_str(
                _required_in(obj, "message", field), f"{field}.message", max_len=2048, free_text=True
            ),
        )


def _required_in(obj: Mapping[str, Any], key: str, parent: str) -> Any:
    if key not in obj:
        raise ProtocolError(f"{parent}.{key}: missing")
    return obj[key]


def _job_or_none(value: object, field: str = "job", now_ms: int | None = None) -> Job | None:
    if value is None:
        return None
    job = Job.from_dict(value, field)
    if now_ms is not None:
        check_ts(job.started_ts, now_ms, f"{field}.started_ts")
    return job


def _capability_names(value: object) -> list[str]:
    """``status.capabilities`` as a list of names; :class:`ProtocolError` unless a list of names."""
    if not isinstance(value, list | tuple):
        raise ProtocolError(f"capabilities: must be a list of action names, got {_show(value)}")
    if len(value) > MAX_CAPABILITIES:
        raise ProtocolError(f"capabilities: {len(value)} names, more than {MAX_CAPABILITIES}")
    for name in value:
        _name(name, "capabilities")
    return list(value)


def _decode_capabilities(value: object) -> tuple[str, ...] | None:
    """A received ``capabilities``: the actions of this contract it names, in :data:`ACTIONS` order.

    Absent or null stays ``None`` (a bridge from before the field). Well-formed names of
    actions this receiver does not know are left out (a newer bridge's); anything else that
    is not a list of names is a :class:`ProtocolError`.
    """
    if value is None:
        return None
    names = set(_capability_names(value))
    return tuple(a for a in ACTIONS if a in names)


def _received(msg: Any, now_ms: int | None) -> Any:
    """Validate ``msg`` and, when the receiver gave its clock, the window of its ``ts``."""
    msg.validate()
    if now_ms is not None and msg.ts is not None:
        check_ts(msg.ts, now_ms)
    return msg


@dataclasses.dataclass(frozen=True)
class Status:
    """``…/status``, retained: the machine's current state as the bridge sees it.

    ``enabled`` is the interlock's truth (always true for machines without an
    interlock). ``spool_dropped`` (an extension of v1; absent means 0) counts
    telemetry and events the bridge's spool dropped because it was full.
    ``capabilities`` (an extension of v1) lists the actions the machine carries
    out, in :data:`ACTIONS` order (see :func:`machine_capabilities`); ``None``
    (absent) means a bridge from before the field, whose receiver falls back on
    :data:`LEGACY_CAPABILITIES`. Decoding leaves out names that are not actions
    of this contract (a newer bridge's), as it ignores unknown fields.
    """

    state: str
    enabled: bool
    bridge: str
    adapter: str
    ts: int
    job: Job | None = None
    error: MachineError | None = None
    spool_dropped: int = 0
    capabilities: tuple[str, ...] | None = None

    def validate(self) -> None:
        if self.state not in STATES:
            raise ProtocolError(f"state: must be one of {', '.join(STATES)}, got {_show(self.state)}")
        _bool(self.enabled, "enabled")
        _slug(self.bridge, "bridge")
        _str(self.adapter, "adapter", max_len=64, allow_empty=False)
        _ts(self.ts)
        _int(self.spool_dropped, "spool_dropped")
        if self.capabilities is not None:
            names = _capability_names(self.capabilities)
            unknown = [n for n in names if n not in ACTIONS]
            if unknown:
                raise ProtocolError(f"capabilities: {_show(unknown[0])} is not one of {', '.join(ACTIONS)}")
            if len(set(names)) != len(names):
                raise ProtocolError("capabilities: lists an action twice")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": VERSION,
            "state": self.state,
            "enabled": self.enabled,
            "bridge": self.bridge,
            "adapter": self.adapter,
            "job": None if self.job is None else self.job.to_dict(),
            "error": None if self.error is None else self.error.to_dict(),
            "ts": self.ts,
            "spool_dropped": self.spool_dropped,
        }
        if self.capabilities is not None:
            data["capabilities"] = list(self.capabilities)
        return data


@dataclasses.dataclass(frozen=True)
class Telemetry:
    """``…/telemetry``: readings taken at ``ts``; ``values`` is a flat map of finite numbers.

    ``refused`` (decoded messages only, never sent): one message per reading the decoder left
    out because it broke the contract (a bad name, not a number, out of bounds). A message
    keeps its valid readings; it is refused whole only when none is valid.
    """

    ts: int
    sid: str
    seq: int
    values: Mapping[str, float]
    refused: tuple[str, ...] = dataclasses.field(default=(), compare=False)

    def validate(self) -> None:
        _ts(self.ts)
        _sid(self.sid)
        _int(self.seq, "seq")
        values = _obj(dict(self.values) if isinstance(self.values, Mapping) else self.values, "values")
        if not values:
            raise ProtocolError("values: must hold at least one reading")
        if len(values) > MAX_READINGS:
            raise ProtocolError(f"values: {len(values)} readings, more than {MAX_READINGS}")
        for key, value in values.items():
            problem = reading_problem(key, value)
            if problem is not None:
                raise ProtocolError(problem)

    def to_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "ts": self.ts, "sid": self.sid, "seq": self.seq, "values": dict(self.values)}


@dataclasses.dataclass(frozen=True)
class Event:
    """``…/event``: something that happened at ``ts`` (``type`` from :data:`EVENT_TYPES` or a new name)."""

    ts: int
    sid: str
    seq: int
    type: str
    job: Job | None = None
    detail: Mapping[str, Any] | None = None

    def validate(self) -> None:
        _ts(self.ts)
        _sid(self.sid)
        _int(self.seq, "seq")
        _name(self.type, "type")
        if self.detail is not None:
            _obj(dict(self.detail) if isinstance(self.detail, Mapping) else self.detail, "detail")
            _check_json_numbers(dict(self.detail), "detail")

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "ts": self.ts,
            "sid": self.sid,
            "seq": self.seq,
            "type": self.type,
            "job": None if self.job is None else self.job.to_dict(),
            "detail": None if self.detail is None else dict(self.detail),
        }


@dataclasses.dataclass(frozen=True)
class Command:
    """``…/cmd``, never retained: do ``action`` unless ``expires`` (epoch ms) has passed.

    ``id`` makes the command idempotent: the bridge carries an id out at most
    once and answers a repeat with the first result. ``booking`` (the booking it
    belongs to, or null) and ``params`` (an optional object for the adapter)
    are passed through. ``expires`` null means the command never expires (for
    tools; the server always sets it).
    """

    id: str
    action: str
    ts: int
    expires: int | None
    booking: str | int | None = None
    params: Mapping[str, Any] | None = None

    def validate(self) -> None:
        _id(self.id)
        if self.action not in ACTIONS:
            raise ProtocolError(f"action: must be one of {', '.join(ACTIONS)}, got {_show(self.action)}")
        _ts(self.ts)
        if self.expires is not None:
            _ts(self.expires, "expires")
        if self.booking is not None and not (_is_int(self.booking) or isinstance(self.booking, str)):
            raise ProtocolError(f"booking: must be a string, an integer or null, got {_show(self.booking)}")
        if self.params is not None:
            _obj(dict(self.params) if isinstance(self.params, Mapping) else self.params, "params")
            _check_json_numbers(dict(self.params), "params")

    def is_expired(self, now_ms: int) -> bool:
        return self.expires is not None and now_ms > self.expires

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "v": VERSION,
            "id": self.id,
            "action": self.action,
            "ts": self.ts,
            "expires": self.expires,
            "booking": self.booking,
        }
        if self.params is not None:
            data["params"] = dict(self.params)
        return data


@dataclasses.dataclass(frozen=True)
class AckError:
    """Why a command failed: ``code`` from :data:`ACK_CODES` and a human ``message``."""

    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


@dataclasses.dataclass(frozen=True)
class CommandAck:
    """``…/cmd/ack``: the outcome of command ``id``. ``ok`` true has ``error`` null, false has one.

    ``id`` is null only when the command was so malformed that it had no
    readable id (then ``error.code`` is ``invalid``).
    """

    id: str | None
    ok: bool
    ts: int
    error: AckError | None = None

    def validate(self) -> None:
        if self.id is not None:
            _str(self.id, "id", max_len=128, allow_empty=False)
        _bool(self.ok, "ok")
        _ts(self.ts)
        if self.ok and self.error is not None:
            raise ProtocolError("error: must be null when ok is true")
        if not self.ok:
            if self.error is None:
                raise ProtocolError("error: missing while ok is false")
            if self.error.code not in ACK_CODES:
                raise ProtocolError(
                    f"error.code: must be one of {', '.join(ACK_CODES)}, got {_show(self.error.code)}"
                )
            _str(self.error.message, "error.message", max_len=2048, free_text=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "id": self.id,
            "ok": self.ok,
            "error": None if self.error is None else self.error.to_dict(),
            "ts": self.ts,
        }


@dataclasses.dataclass(frozen=True)
class BridgeOnline:
    """``fablab/v1/_bridges/{bridge}/online``, retained.

    After connecting the bridge publishes ``online`` true with ``ts``; its Last
    Will is exactly ``{"v": 1, "online": false}`` (no ``ts``: the broker sends it
    later). Extensions of v1: ``spool_dropped`` (total dropped by a full spool)
    and ``spool_pending`` (messages waiting for the broker), both absent in the will.
    """

    online: bool
    ts: int | None = None
    spool_dropped: int | None = None
    spool_pending: int | None = None

    def validate(self) -> None:
        _bool(self.online, "online")
        if self.ts is not None:
            _ts(self.ts)
        if self.spool_dropped is not None:
            _int(self.spool_dropped, "spool_dropped")
        if self.spool_pending is not None:
            _int(self.spool_pending, "spool_pending")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": VERSION, "online": self.online}
        if self.ts is not None:
            data["ts"] = self.ts
        if self.spool_dropped is not None:
            data["spool_dropped"] = self.spool_dropped
        if self.spool_pending is not None:
            data["spool_pending"] = self.spool_pending
        return data


Message = Status | Telemetry | Event | Command | CommandAck | BridgeOnline

#: The Last Will's payload, byte for byte.
WILL_PAYLOAD = b'{"v":1,"online":false}'


def encode(message: Message) -> bytes:
    """Validate ``message`` and return its compact UTF-8 JSON; raise :class:`ProtocolError` if invalid."""
    message.validate()
    return _dumps(message.to_dict())


# -------------------------------------------------------------------------- decoders


def decode_status(payload: bytes | str, *, now_ms: int | None = None) -> Status:
    """Decode and validate a ``status`` payload (``now_ms``: the receiver's clock, see :func:`check_ts`)."""
    data = load_payload(payload)
    spool_dropped = data.get("spool_dropped", 0)
    error = data.get("error")
    msg = Status(
        state=_required(data, "state"),
        enabled=_required(data, "enabled"),
        bridge=_required(data, "bridge"),
        adapter=_required(data, "adapter"),
        ts=_required(data, "ts"),
        job=_job_or_none(data.get("job"), now_ms=now_ms),
        error=None if error is None else MachineError.from_dict(error),
        spool_dropped=0 if spool_dropped is None else spool_dropped,
        capabilities=_decode_capabilities(data.get("capabilities")),
    )
    return _received(msg, now_ms)


#: Reading names known to match :data:`NAME_RE` (bounded: a flood of new names cannot grow it).
_GOOD_NAMES: set[str] = set()


def _decode_telemetry_fast(payload: object, now_ms: int | None) -> Telemetry | None:
    """The common, well-formed ``telemetry`` payload decoded with fewer steps, else ``None``.

    Returns only what :func:`decode_telemetry`'s full path returns for the same payload:
    every check below is one of the full path's, narrowed (exact ``int``/``float``/``str``
    types, no reading refused, ``ts`` inside the window); whatever it does not accept
    whole — a refusal, a left-out reading, anything unusual — gives ``None``, and the full
    path decides (and words the refusal). ``tests/firmware_bridge/test_protocol.py``
    checks both agree on arbitrary payloads.
    """
    if type(payload) is not bytes and type(payload) is not bytearray:
        return None
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        data = _JSON_DECODER.decode(payload.decode("utf-8"))
    except Exception:  # not UTF-8, not JSON, NaN, too deep, too long an integer: the full path
        return None
    if type(data) is not dict:
        return None
    v = data.get("v")
    ts = data.get("ts")
    sid = data.get("sid")
    seq = data.get("seq")
    raw = data.get("values")
    if type(v) is not int or v != VERSION or type(ts) is not int or type(seq) is not int:
        return None
    if type(raw) is not dict or not 0 < len(raw) <= MAX_READINGS or type(sid) is not str:
        return None
    if not 0 <= ts <= MAX_TS_MS or not 0 <= seq <= MAX_INT:
        return None
    if now_ms is not None and not now_ms - MAX_AGE_MS <= ts <= now_ms + MAX_FUTURE_SKEW_MS:
        return None
    good = _GOOD_NAMES
    for key, value in raw.items():
        kind = type(value)
        if (kind is not int and kind is not float) or not -MAX_READING <= value <= MAX_READING:
            return None  # NaN and the infinities fail the comparison too
        if key not in good:
            if type(key) is not str or NAME_RE.fullmatch(key) is None:
                return None
            if len(good) < 4096:
                good.add(key)
    canonical = _canonical_uuid(sid)
    if canonical is None:
        return None
    return Telemetry(ts=ts, sid=canonical, seq=seq, values=raw, refused=())


def decode_telemetry(payload: bytes | str, *, now_ms: int | None = None) -> Telemetry:
    """Decode and validate a ``telemetry`` payload.

    A reading that breaks the contract is left out and described in ``refused``; the
    message is refused (:class:`ProtocolError`) when no valid reading is left, or when it
    holds more than :data:`MAX_READINGS`.
    """
    fast = _decode_telemetry_fast(payload, now_ms)
    if fast is not None:
        return fast
    data = load_payload(payload)
    raw = _obj(_required(data, "values"), "values")
    if len(raw) > MAX_READINGS:
        raise ProtocolError(f"values: {len(raw)} readings, more than {MAX_READINGS}")
    values: dict[str, float] = {}
    refused: list[str] = []
    for key, value in raw.items():
        problem = reading_problem(key, value)
        if problem is None:
            values[key] = value
        else:
            refused.append(problem)
    if refused and not values:
        raise ProtocolError(refused[0])
    msg = Telemetry(
        ts=_required(data, "ts"),
        sid=_sid(_required(data, "sid")),
        seq=_required(data, "seq"),
        values=values,
        refused=tuple(refused),
    )
    return _received(msg, now_ms)


def decode_event(payload: bytes | str, *, now_ms: int | None = None) -> Event:
    """Decode and validate an ``event`` payload (``now_ms``: see :func:`check_ts`)."""
    data = load_payload(payload)
    detail = data.get("detail")
    msg = Event(
        ts=_required(data, "ts"),
        sid=_sid(_required(data, "sid")),
        seq=_required(data, "seq"),
        type=_required(data, "type"),
        job=_job_or_none(data.get("job"), now_ms=now_ms),
        detail=None if detail is None else _clean_json(_obj(detail, "detail")),
    )
    return _received(msg, now_ms)


def decode_command(payload: bytes | str) -> Command:
    """Decode and validate a ``cmd`` payload (``expires``, ``booking`` and ``params`` may be absent)."""
    data = load_payload(payload)
    params = data.get("params")
    msg = Command(
        id=_id(_required(data, "id")),
        action=_required(data, "action"),
        ts=_required(data, "ts"),
        expires=data.get("expires"),
        booking=data.get("booking"),
        params=None if params is None else _clean_json(_obj(params, "params")),
    )
    msg.validate()
    return msg


def command_id_of(payload: bytes | str) -> str | None:
    """Best effort: the ``id`` of a command that failed to decode, to acknowledge it; else ``None``.

    Never raises: whatever the payload (not JSON, too large, too deep, not bytes), the bridge
    must still be able to answer ``invalid``.
    """
    try:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return None
        data = json.loads(payload if isinstance(payload, str) else bytes(payload).decode("utf-8", "replace"))
    except (ValueError, RecursionError, TypeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("id"), str) and ID_RE.fullmatch(data["id"]):
        return data["id"]
    return None


def decode_cmd_ack(payload: bytes | str, *, now_ms: int | None = None) -> CommandAck:
    """Decode and validate a ``cmd/ack`` payload (``now_ms``: see :func:`check_ts`)."""
    data = load_payload(payload)
    error = data.get("error")
    ack_error = None
    if error is not None:
        obj = _obj(error, "error")
        ack_error = AckError(
            code=_str(_required_in(obj, "code", "error"), "error.code", max_len=64),
            message=_str(
                _required_in(obj, "message", "error"), "error.message", max_len=2048, free_text=True
            ),
        )
    msg = CommandAck(
        id=_required(data, "id"), ok=_required(data, "ok"), ts=_required(data, "ts"), error=ack_error
    )
    return _received(msg, now_ms)


def decode_online(payload: bytes | str, *, now_ms: int | None = None) -> BridgeOnline:
    """Decode and validate a bridge ``online`` payload (including the Last Will, which has no ``ts``)."""
    data = load_payload(payload)
    msg = BridgeOnline(
        online=_required(data, "online"),
        ts=data.get("ts"),
        spool_dropped=data.get("spool_dropped"),
        spool_pending=data.get("spool_pending"),
    )
    return _received(msg, now_ms)


_DECODERS = {
    STATUS: decode_status,
    TELEMETRY: decode_telemetry,
    EVENT: decode_event,
    CMD: decode_command,
    CMD_ACK: decode_cmd_ack,
    ONLINE: decode_online,
}


def decode(topic: str, payload: bytes | str, *, now_ms: int | None = None) -> tuple[ParsedTopic, Message]:
    """Parse ``topic`` and decode ``payload`` with the matching decoder.

    ``now_ms`` (the receiver's clock) also checks the window of ``ts`` (:func:`check_ts`) of every
    kind but commands, whose lifetime is their ``expires``.
    """
    parsed = parse_topic(topic)
    if parsed.kind == CMD:
        return parsed, decode_command(payload)
    return parsed, _DECODERS[parsed.kind](payload, now_ms=now_ms)


def now_ms() -> int:
    """Milliseconds since the Unix epoch (the contract's ``ts``)."""
    return time.time_ns() // 1_000_000


# ------------------------------------------------------------ what the server needs besides the topics
# The server (``devices``) imports nothing else from the bridge: broker URLs and the power plugs'
# own topics are spelled here, once, for both sides.


def parse_mqtt_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """Split ``mqtt[s]://[user[:password]@]host[:port]`` into (host, port, tls, user, password).

    Raises ValueError with a one-line reason. User and password are URL-decoded. The bridge's
    ``[mqtt] url`` and the hub's ``MQTT_URL`` are both read with this.
    """
    from urllib.parse import unquote, urlsplit  # only the URL parsers need it

    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"must start with mqtt:// or mqtts://, got {url.split('://')[0]!r}")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must not have a path, query or fragment")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ValueError("has an invalid port") from None
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return parts.hostname, port, tls, user, password


def send_at_once(client: Any, userdata: Any, sock: Any) -> None:
    """paho's ``on_socket_open`` for every client of the project: TCP_NODELAY on the broker connection.

    An MQTT client writes small packets (a status, a PUBACK) one after the other. With Nagle's
    algorithm on, the kernel holds a small packet back while an earlier one is unacknowledged,
    and the peer acknowledges late on purpose (delayed ACK, 40 ms on Linux): measured on the
    board's path, a status waited up to 30–40 ms before the hub even received it (p99 32 ms,
    p90 2 ms; ``docs/benchmarks.md``). paho-mqtt does not set the option, so every client sets
    it here (a TLS socket takes the option too); the broker's side is Mosquitto's
    ``set_tcp_nodelay true``. A socket that is not TCP (a Unix socket) is left as it is.
    """
    import contextlib
    import socket  # only the callback needs them

    with contextlib.suppress(AttributeError, OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: The power plugs a bridge drives over the broker itself (adapter names).
TASMOTA = "tasmota"
SHELLY = "shelly"
PLUG_KINDS = (TASMOTA, SHELLY)

#: A broker ACL rule: (access, topic filter), access one of read, write, readwrite.
AclRule = tuple[str, str]


def plug_acl(kind: str, topic: str) -> tuple[list[AclRule], list[AclRule]]:
    """The broker rules of a power plug: (for the plug's own MQTT user, for the bridge that drives it).

    ``topic`` is Tasmota's ``%topic%`` or a Shelly's topic prefix. A Tasmota plug publishes
    ``tele/`` and ``stat/`` and reads ``cmnd/``; a Shelly owns everything under its prefix (it
    also answers RPCs to ``<prefix>/fablab-bridge/rpc``), and its bridge reads it all and may only
    send commands (Gen2 RPC, Gen1 relay and update commands). The server's ``mqtt_sync`` writes
    these rules so that each plug may only use its own topics. ValueError for another ``kind``.
    """
    if kind == TASMOTA:
        plug = [("write", f"tele/{topic}/#"), ("write", f"stat/{topic}/#"), ("read", f"cmnd/{topic}/#")]
        bridge = [("read", f"tele/{topic}/#"), ("read", f"stat/{topic}/#"), ("write", f"cmnd/{topic}/#")]
        return plug, bridge
    if kind == SHELLY:
        plug = [("readwrite", f"{topic}/#")]
        bridge = [
            ("read", f"{topic}/#"),
            ("write", f"{topic}/rpc"),
            ("write", f"{topic}/relay/0/command"),
            ("write", f"{topic}/command"),
        ]
        return plug, bridge
    raise ValueError(f"{kind!r} is not a power plug kind ({', '.join(PLUG_KINDS)})")
