"""``bridge.toml``: the bridge's configuration, parsed into dataclasses with every problem named.

Shape (see hardware_docs/bridge.md for the full reference)::

    [bridge]
    id = "bxl-centre-bridge"          # slug; names the online topic and the MQTT client
    spool = "/var/lib/fablab-bridge/spool.sqlite3"   # relative paths are relative to this file
    spool_max_messages = 200000

    [mqtt]
    url = "mqtts://bridge:secret@broker.example.org:8883"
    ca_file = "/etc/fablab-bridge/ca.pem"

    [[machines]]
    lab = "bxl-centre"
    machine = "cnc-router"
    adapter = "grbl"
    interlock = false
    [machines.options]
    port = "/dev/serial/by-id/usb-1a86_USB_Serial-if00-port0"
    baudrate = 115200

:func:`load` raises :class:`ConfigError` listing every problem, one line each,
as ``path: what is wrong`` (``machines[2].options.baudrate: must be an integer``).
Unknown keys are errors: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firmware_bridge import protocol

DEFAULT_SPOOL_MAX_MESSAGES = 200_000


class ConfigError(Exception):
    """A configuration with problems; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class BridgeSection:
    """``[bridge]``."""

    id: str
    spool: Path
    spool_max_messages: int = DEFAULT_SPOOL_MAX_MESSAGES
    #: Spooled messages handed to the MQTT client at once (bounds memory and message ids).
    publish_window: int = 1000
    #: Retained status is re-published at least this often, even without a change.
    status_interval_s: float = 300.0
    #: How long the ids of executed commands are remembered (idempotency).
    command_memory_s: float = 7 * 24 * 3600.0
    #: A command the adapter has not finished within this is acknowledged ``device_error``.
    command_timeout_s: float = 60.0
    log_level: str = "info"


@dataclasses.dataclass(frozen=True)
class MqttSection:
    """``[mqtt]``; ``url`` is split into host, port, TLS and credentials."""

    url: str
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    ca_file: Path | None = None
    client_id: str | None = None
    keepalive_s: int = 30
    #: Unacknowledged QoS 1 messages on the wire; Mosquitto's default receive maximum is 20.
    max_inflight: int = 20
    #: MQTT 5 session expiry: commands sent during a short outage are delivered after reconnecting.
    session_expiry_s: int = 3600
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0

    def redacted_url(self) -> str:
        """The URL without the password, for logs."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class MachineConfig:
    """One ``[[machines]]`` entry."""

    lab: str
    machine: str
    adapter: str
    interlock: bool = False
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: Overrides the adapter's own poll interval when set.
    poll_interval_s: float | None = None

    @property
    def key(self) -> str:
        return f"{self.lab}/{self.machine}"


@dataclasses.dataclass(frozen=True)
class BridgeConfig:
    """The whole file."""

    bridge: BridgeSection
    mqtt: MqttSection
    machines: tuple[MachineConfig, ...]
    path: Path | None = None

    def machine(self, name: str) -> MachineConfig:
        """The machine called ``name`` (``machine`` or ``lab/machine``); KeyError if none or ambiguous."""
        found = [m for m in self.machines if name in (m.machine, m.key)]
        if len(found) != 1:
            raise KeyError(name)
        return found[0]


# ---------------------------------------------------------------------------- parsing


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")


def _unknown(table: Mapping[str, Any], allowed: set[str], path: str, problems: _Problems) -> None:
    for key in table:
        if key not in allowed:
            problems.add(
                f"{path}.{key}" if path else key, f"unknown key (allowed: {', '.join(sorted(allowed))})"
            )


_MISSING = object()


def _get(
    table: Mapping[str, Any],
    key: str,
    path: str,
    problems: _Problems,
    kind: str,
    default: Any = _MISSING,
    *,
    minimum: float | None = None,
) -> Any:
    """Fetch ``table[key]`` checked against ``kind`` (str, int, bool, float); None after a problem."""
    where = f"{path}.{key}"
    if key not in table:
        if default is _MISSING:
            problems.add(where, "missing")
            return None
        return default
    value = table[key]
    if kind == "str":
        if not isinstance(value, str):
            problems.add(where, "must be a string")
            return None
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(where, "must be an integer")
            return None
    elif kind == "bool":
        if not isinstance(value, bool):
            problems.add(where, "must be true or false")
            return None
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.add(where, "must be a number")
            return None
        value = float(value)
    if minimum is not None and value < minimum:
        problems.add(where, f"must be >= {minimum:g}")
        return None
    return value


def _slug(table: Mapping[str, Any], key: str, path: str, problems: _Problems) -> str | None:
    value = _get(table, key, path, problems, "str")
    if value is not None and not protocol.is_slug(value):
        problems.add(f"{path}.{key}", f"must match [a-z0-9][a-z0-9-]{{0,62}}, got {value!r}")
        return None
    return value


def _table(
    data: Mapping[str, Any], key: str, problems: _Problems, *, required: bool = True
) -> dict[str, Any]:
    if key not in data:
        if required:
            problems.add(key, "missing section")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        problems.add(key, "must be a table")
        return {}
    return value


def _resolve(path_text: str, base: Path | None) -> Path:
    path = Path(os.path.expanduser(path_text))
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


#: ``mqtt[s]://[user[:password]@]host[:port]`` -> (host, port, tls, user, password); the hub reads its
#: ``MQTT_URL`` with the same function.
parse_mqtt_url = protocol.parse_mqtt_url


def _bridge(data: Mapping[str, Any], base: Path | None, problems: _Problems) -> BridgeSection | None:
    t = _table(data, "bridge", problems)
    _unknown(
        t,
        {
            "id",
            "spool",
            "spool_max_messages",
            "publish_window",
            "status_interval_s",
            "command_memory_s",
            "command_timeout_s",
            "log_level",
        },
        "bridge",
        problems,
    )
    if not t and "bridge" not in data:
        return None
    bridge_id = _slug(t, "id", "bridge", problems)
    spool = _get(t, "spool", "bridge", problems, "str", "spool.sqlite3")
    max_messages = _get(
        t, "spool_max_messages", "bridge", problems, "int", DEFAULT_SPOOL_MAX_MESSAGES, minimum=100
    )
    window = _get(t, "publish_window", "bridge", problems, "int", 1000, minimum=1)
    if window is not None and window > 60_000:
        problems.add("bridge.publish_window", "must be <= 60000 (MQTT message ids are 16-bit)")
    status_interval = _get(t, "status_interval_s", "bridge", problems, "float", 300.0, minimum=1)
    memory = _get(t, "command_memory_s", "bridge", problems, "float", 7 * 24 * 3600.0, minimum=60)
    cmd_timeout = _get(t, "command_timeout_s", "bridge", problems, "float", 60.0, minimum=1)
    level = _get(t, "log_level", "bridge", problems, "str", "info")
    if level is not None and level.lower() not in ("debug", "info", "warning", "error"):
        problems.add("bridge.log_level", "must be one of debug, info, warning, error")
    if spool is not None and not spool.strip():
        problems.add("bridge.spool", "must not be empty")
        spool = None
    if None in (bridge_id, spool, max_messages, window, status_interval, memory, cmd_timeout, level):
        return None
    return BridgeSection(
        id=bridge_id,
        spool=_resolve(spool, base),
        spool_max_messages=max_messages,
        publish_window=min(window, 60_000),
        status_interval_s=status_interval,
        command_memory_s=memory,
        command_timeout_s=cmd_timeout,
        log_level=level.lower(),
    )


def _mqtt(data: Mapping[str, Any], base: Path | None, problems: _Problems) -> MqttSection | None:
    t = _table(data, "mqtt", problems)
    _unknown(
        t,
        {
            "url",
            "ca_file",
            "client_id",
            "keepalive_s",
            "max_inflight",
            "session_expiry_s",
            "reconnect_min_s",
            "reconnect_max_s",
        },
        "mqtt",
        problems,
    )
    if not t and "mqtt" not in data:
        return None
    url = _get(t, "url", "mqtt", problems, "str")
    parsed = None
    if url is not None:
        try:
            parsed = parse_mqtt_url(url)
        except ValueError as exc:
            problems.add("mqtt.url", str(exc))
    ca_text = _get(t, "ca_file", "mqtt", problems, "str", None)
    ca_file = None
    if ca_text is not None:
        ca_file = _resolve(ca_text, base)
        if not ca_file.is_file():
            problems.add("mqtt.ca_file", f"no such file: {ca_file}")
        elif parsed is not None and not parsed[2]:
            problems.add("mqtt.ca_file", "is only used with an mqtts:// url")
    client_id = _get(t, "client_id", "mqtt", problems, "str", None)
    if client_id is not None and not (1 <= len(client_id) <= 128):
        problems.add("mqtt.client_id", "must be 1 to 128 characters")
    keepalive = _get(t, "keepalive_s", "mqtt", problems, "int", 30, minimum=5)
    inflight = _get(t, "max_inflight", "mqtt", problems, "int", 20, minimum=1)
    expiry = _get(t, "session_expiry_s", "mqtt", problems, "int", 3600, minimum=0)
    rmin = _get(t, "reconnect_min_s", "mqtt", problems, "float", 1.0, minimum=0.1)
    rmax = _get(t, "reconnect_max_s", "mqtt", problems, "float", 60.0, minimum=0.1)
    if rmin is not None and rmax is not None and rmax < rmin:
        problems.add("mqtt.reconnect_max_s", "must be >= mqtt.reconnect_min_s")
    if parsed is None or None in (keepalive, inflight, expiry, rmin, rmax):
        return None
    host, port, tls, user, password = parsed
    return MqttSection(
        url=url,
        host=host,
        port=port,
        tls=tls,
        username=user,
        password=password,
        ca_file=ca_file,
        client_id=client_id,
        keepalive_s=keepalive,
        max_inflight=inflight,
        session_expiry_s=expiry,
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
    )


_OPTION_PATH_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]-]*):\s")


def _machines(data: Mapping[str, Any], problems: _Problems) -> list[MachineConfig]:
    from firmware_bridge.adapters import ADAPTERS, IMPORT_ERRORS, load_all

    load_all()
    if "machines" not in data:
        problems.add("machines", "missing: add at least one [[machines]] table")
        return []
    entries = data["machines"]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.add("machines", "must be an array of tables ([[machines]])")
        return []
    if not entries:
        problems.add("machines", "must hold at least one machine")
    machines: list[MachineConfig] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(entries):
        path = f"machines[{i}]"
        _unknown(
            entry, {"lab", "machine", "adapter", "interlock", "options", "poll_interval_s"}, path, problems
        )
        lab = _slug(entry, "lab", path, problems)
        machine = _slug(entry, "machine", path, problems)
        adapter = _get(entry, "adapter", path, problems, "str")
        interlock = _get(entry, "interlock", path, problems, "bool", False)
        poll = _get(entry, "poll_interval_s", path, problems, "float", None, minimum=0.05)
        options = entry.get("options", {})
        if not isinstance(options, dict):
            problems.add(f"{path}.options", "must be a table ([machines.options])")
            options = None
        if lab is not None and machine is not None:
            if (lab, machine) in seen:
                problems.add(
                    f"{path}.machine", f"{lab}/{machine} is already machines[{seen[(lab, machine)]}]"
                )
            seen[(lab, machine)] = i
        if adapter is not None:
            cls = ADAPTERS.get(adapter)
            if cls is None:
                reason = IMPORT_ERRORS.get(adapter)
                known = ", ".join(sorted(ADAPTERS)) or "none"
                problems.add(
                    f"{path}.adapter",
                    f"adapter {adapter!r} could not be loaded ({reason})"
                    if reason
                    else f"unknown adapter {adapter!r} (known: {known})",
                )
            elif options is not None:
                try:
                    option_problems = list(cls.validate_options(options))
                except Exception as exc:  # a buggy validator must not hide the other problems
                    option_problems = [f"could not be validated: {type(exc).__name__}: {exc}"]
                for message in option_problems:
                    message = str(message)
                    if _OPTION_PATH_RE.match(message):
                        key = message.split(":", 1)[0]
                        rest = message.split(":", 1)[1].strip()
                        if key.startswith("options."):
                            key = key[len("options.") :]
                        problems.add(f"{path}.options.{key}", rest)
                    else:
                        problems.add(f"{path}.options", message)
        if None not in (lab, machine, adapter, interlock, options) and (
            poll is not None or "poll_interval_s" not in entry
        ):
            machines.append(
                MachineConfig(
                    lab=lab,
                    machine=machine,
                    adapter=adapter,
                    interlock=interlock,
                    options=dict(options),
                    poll_interval_s=poll,
                )
            )
    return machines


def parse(data: Mapping[str, Any], *, base: Path | None = None, path: Path | None = None) -> BridgeConfig:
    """Build a :class:`BridgeConfig` from already-parsed TOML; raise :class:`ConfigError` listing all problems."""
    problems = _Problems()
    _unknown(data, {"bridge", "mqtt", "machines"}, "", problems)
    bridge = _bridge(data, base, problems)
    mqtt = _mqtt(data, base, problems)
    machines = _machines(data, problems)
    if problems.lines:
        raise ConfigError(problems.lines)
    assert bridge is not None and mqtt is not None
    return BridgeConfig(bridge=bridge, mqtt=mqtt, machines=tuple(machines), path=path)


def load(path: str | os.PathLike[str], *, mqtt_url: str | None = None) -> BridgeConfig:
    """Read and validate ``path``. ``mqtt_url`` replaces ``[mqtt] url`` (CLI ``--mqtt-url``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from None
    if mqtt_url is not None:
        mqtt = data.get("mqtt")
        if mqtt is None:
            data["mqtt"] = {"url": mqtt_url}
        elif isinstance(mqtt, dict):
            mqtt["url"] = mqtt_url
    return parse(data, base=path.resolve().parent, path=path)


def check(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of the file at ``path``, one line each; empty when it is valid."""
    try:
        load(path)
    except ConfigError as exc:
        return exc.problems
    return []
