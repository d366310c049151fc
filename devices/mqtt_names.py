"""What may be written into Mosquitto's password and ACL files, and how big a packet may be.

Every user name and every topic the project writes into those files comes from
the database: bridge ids, lab and machine slugs, power-plug user names and
plug topics. Mosquitto's parsers (``src/security_default.c``, 2.0) give some
characters a meaning there:

- ACL file: one rule per line; a line starting with ``#`` is a comment; ``user``
  and ``topic`` take the rest of the line with leading and trailing blanks
  trimmed. A newline in a name starts a rule of its own (``topic readwrite #``);
  a trailing blank makes two database names one broker user.
- In a topic filter ``#`` and ``+`` are wildcards: a plug topic ``#`` would grant
  its plug, and its bridge, the whole broker. A filter starting with ``$``
  reaches ``$SYS`` and the like.
- Password file: ``user:hash``, split on ``:``, lines starting with ``#`` skipped.

So a name written there is a plain word, checked by :func:`name_problem`:
1 to 100 ASCII letters, digits, ``-``, ``_`` or ``.``, starting with a letter
or digit. That refuses ``#``, ``+``, ``$``, ``/``, ``:``, ``%``, NUL, every
whitespace (``\\n``, ``\\r``, ``\\t``, Unicode spaces) and every other
non-ASCII character. Lab, machine and bridge slugs
(``[a-z0-9][a-z0-9-]{0,62}``, the MQTT contract's) are a subset. A plug topic
(:func:`topic_problem`) is one or more such names separated by ``/`` (a
Shelly Gen1 prefix is ``shellies/<model>-<id>``).

This module needs no app registry, so the test support and ``make run`` can
import :data:`MOSQUITTO_MAX_PACKET_SIZE` before Django is set up.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from firmware_bridge import protocol

MAX_NAME_LENGTH = 100  # PowerPlug.topic and .mqtt_username are CharField(max_length=100)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_DESCRIBED = {
    "#": "the wildcard '#'",
    "+": "the wildcard '+'",
    "$": "'$' (system topics)",
    "/": "'/' (a topic level separator)",
    ":": "':' (the password file's separator)",
    "\x00": "NUL",
}

# The broker's packet limit: the hub refuses any payload over protocol.MAX_PAYLOAD_BYTES
# (16 KiB), so the broker need not accept a bigger PUBLISH either. A PUBLISH is (MQTT 5.0,
# section 3.3) a fixed header of 1 byte plus a Remaining Length of up to 4 bytes, a topic
# of up to 65,535 bytes after its 2-byte length (any legal topic: the limit never refuses
# a message because of its topic), a 2-byte packet id (QoS 1), the properties' length (up to
# 4 bytes) and the properties themselves (our clients send at most a message expiry: 5 bytes;
# 512 leaves room for a device's own), then the payload.
MQTT_FIXED_HEADER_MAX = 1 + 4
MQTT_MAX_TOPIC_BYTES = 65_535
MQTT_PUBLISH_VARIABLE_HEADER_MAX = 2 + MQTT_MAX_TOPIC_BYTES + 2 + 4 + 512
#: ``max_packet_size`` of every Mosquitto the project configures (82,444 bytes). Mosquitto
#: disconnects a client that sends a bigger packet of any kind before reading it in
#: (MQTT 5 clients get DISCONNECT reason 149, "Packet too large"), and announces the
#: limit to MQTT 5 clients in its CONNACK.
MOSQUITTO_MAX_PACKET_SIZE = (
    protocol.MAX_PAYLOAD_BYTES + MQTT_FIXED_HEADER_MAX + MQTT_PUBLISH_VARIABLE_HEADER_MAX
)


def name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a user name or one topic level in Mosquitto's files, or None.

    The answer is English for logs and command output, e.g. ``"contains the wildcard '#'"``.
    """
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if value == "":
        return "is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    for char in value:
        if char in _DESCRIBED:
            return f"contains {_DESCRIBED[char]}"
        if char.isspace() or not char.isprintable():
            return f"contains the whitespace or control character {char!r}"
        if not (char.isascii() and (char.isalnum() or char in "_.-")):
            return f"contains {char!r}"
    if not NAME_RE.fullmatch(value):
        return f"starts with {value[0]!r}, not a letter or digit"
    return None


def topic_problem(value: object) -> str | None:
    """Why ``value`` cannot be a plug topic (one or more names joined by ``/``), or None."""
    if not isinstance(value, str):
        return f"is not text ({type(value).__name__})"
    if value == "":
        return "is empty"
    if len(value) > MAX_NAME_LENGTH:
        return f"is longer than {MAX_NAME_LENGTH} characters"
    if "/" not in value:
        return name_problem(value)
    for level in value.split("/"):
        if level == "":
            return "has an empty level (a leading, trailing or doubled '/')"
        problem = name_problem(level)
        if problem:
            return f"has a level {level!r} that {problem}"
    return None


def validate_mqtt_name(value: str) -> None:
    """Field validator: a user name or topic level that Mosquitto's files take literally."""
    if name_problem(value):
        raise ValidationError(
            _(
                "Use 1 to 100 ASCII letters, digits, hyphens, underscores or dots, starting with "
                "a letter or digit (no spaces, “/”, “:”, “#”, “+” or “$”)."
            ),
            code="mqtt_name",
            params={"value": value},
        )


def validate_mqtt_topic(value: str) -> None:
    """Field validator: a plug topic, one or more :func:`validate_mqtt_name` levels joined by ``/``."""
    if topic_problem(value):
        raise ValidationError(
            _(
                "Use one or more levels separated by “/”, each made of ASCII letters, digits, "
                "hyphens, underscores or dots and starting with a letter or digit (no spaces, "
                "“#”, “+” or “$”)."
            ),
            code="mqtt_topic",
            params={"value": value},
        )


def hub_username() -> str:
    """The hub's broker user name: the user of ``settings.MQTT_URL`` (may be empty)."""
    return unquote(urlsplit(settings.MQTT_URL).username or "")


def filters_overlap(a: str, b: str) -> bool:
    """Whether some topic matches both MQTT topic filters ``a`` and ``b``."""
    la, lb = a.split("/"), b.split("/")
    i = 0
    while True:
        if (i < len(la) and la[i] == "#") or (i < len(lb) and lb[i] == "#"):
            return True  # "x/#" also matches "x" itself
        if i == len(la) or i == len(lb):
            return len(la) == len(lb)
        if la[i] != lb[i] and "+" not in (la[i], lb[i]):
            return False
        i += 1


def filter_problem(topic_filter: str, *, plus: bool = False) -> str | None:
    """Why a topic filter about to be written on a ``topic`` line is unsafe, or None.

    The last line of defence on what :mod:`devices.mqtt_auth` writes, whatever
    produced the filter: ``#`` only as a whole last level (what the adapters'
    ``broker_acl`` use), ``+`` only as a whole level and only when ``plus`` (the
    hub's own rules), never ``$`` or whitespace.
    """
    if not topic_filter or topic_filter.startswith("/") or "//" in topic_filter:
        return "is empty or has an empty level"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if (
            (level == "#" and i == len(levels) - 1 and i > 0)
            or (plus and level == "+")
            or (level == protocol.BRIDGES and "/".join(levels[:i]) == protocol.PREFIX)
        ):
            continue  # "_bridges" is the contract's reserved lab level, never a slug
        problem = name_problem(level)
        if problem:
            return f"has a level {level!r} that {problem}"
    return None
