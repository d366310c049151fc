"""Template helpers of the floor board and the machine page."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template

from devices.charts import LABELS, format_value, unit_of
from fablab.booking.models import Booking

register = template.Library()

#: Readings a card shows, in this order: temperatures or power, then motion.
CARD_READINGS = (
    "temp_nozzle_c",
    "temp_bed_c",
    "power_w",
    "spindle_rpm",
    "laser_power_pct",
    "feed_mm_min",
)


def reading_value(raw: Any) -> float | None:
    """A reading as the hub stores it: a number, or ``{"value": n, ...}``."""
    if isinstance(raw, dict):
        raw = raw.get("value", raw.get("v"))
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


@register.filter
def card_readings(readings: Any) -> list[tuple[str, str, str]]:
    """``[(name, label, "212.5 °C"), ...]`` for the readings a card shows."""
    if not isinstance(readings, dict):
        return []
    out = []
    for name in CARD_READINGS:
        value = reading_value(readings.get(name))
        if value is None:
            continue
        unit, _title = unit_of(name)
        shown = format_value(value)  # as the chart legend's "now" below the card
        out.append((name, str(LABELS.get(name, name)), f"{shown} {unit}".strip()))
    return out


@register.filter
def iso_dt(value: Any) -> dt.datetime | None:
    """An ISO 8601 string (as in the board's frames) → an aware datetime, for the ``date`` filter."""
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@register.filter
def booking_kind(kind: Any) -> str:
    """A booking kind's translated name ("Training session"), as board.js writes it on repaint."""
    try:
        return str(Booking.Kind(kind).label)
    except ValueError:
        return str(kind)
