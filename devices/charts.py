"""Server-rendered line charts of a machine's telemetry, as inline SVG.

No JavaScript and no chart library: the machine page is one HTML response
that works on a phone and in a screen reader (each chart has a title, and
its legend states the latest, lowest and highest value of every series).

Input: ``{name: [(when, value), ...]}`` where ``when`` is epoch ms, a
datetime or an ISO 8601 string. Series are grouped into one chart per unit
(the unit is the telemetry name's suffix: ``temp_nozzle_c`` is in °C).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import formats, timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

WIDTH = 640
HEIGHT = 220
PAD_LEFT = 56
PAD_RIGHT = 12
PAD_TOP = 12
PAD_BOTTOM = 28
MAX_POINTS = 600
#: Colours with at least 3:1 contrast on white, told apart by dash patterns too.
PALETTE = ["#0b57a4", "#b3261e", "#2e7d46", "#8a4b00", "#6a3d9a", "#00707a"]

#: (suffix, unit shown, chart title); the longest matching suffix wins.
UNITS = [
    ("_mm_min", "mm/min", _("Feed")),
    ("_wh", "Wh", _("Energy")),
    ("_pct", "%", _("Percent")),
    ("_rpm", "rpm", _("Spindle")),
    ("_mm", "mm", _("Position")),
    ("_c", "°C", _("Temperatures")),
    ("_w", "W", _("Power")),
    ("_s", "s", _("Time")),
]

LABELS = {
    "temp_nozzle_c": _("Nozzle"),
    "temp_nozzle_target_c": _("Nozzle target"),
    "temp_bed_c": _("Bed"),
    "temp_bed_target_c": _("Bed target"),
    "progress_pct": _("Progress"),
    "print_time_s": _("Print time"),
    "print_time_left_s": _("Print time left"),
    "power_w": _("Power"),
    "energy_wh": _("Energy counter"),
    "feed_mm_min": _("Feed rate"),
    "spindle_rpm": _("Spindle speed"),
    "laser_power_pct": _("Laser power"),
    "pos_x_mm": _("X"),
    "pos_y_mm": _("Y"),
    "pos_z_mm": _("Z"),
    "feed_override_pct": _("Feed override"),
}


def label(name: str) -> str:
    return str(LABELS.get(name, name))


def unit_of(name: str) -> tuple[str, str]:
    """``(unit, chart title)`` for a telemetry name; names without a known unit chart alone."""
    for suffix, unit, title in UNITS:
        if name.endswith(suffix):
            return unit, str(title)
    return "", label(name)


def _ms(when: Any) -> int | None:
    if isinstance(when, bool):
        return None
    if isinstance(when, int | float):
        return int(when)
    if isinstance(when, dt.datetime):
        if timezone.is_naive(when):
            when = when.replace(tzinfo=dt.UTC)
        return int(when.timestamp() * 1000)
    if isinstance(when, str):
        try:
            parsed = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return None
        return _ms(parsed)
    return None


def clean_points(points: Iterable[Any]) -> list[tuple[int, float]]:
    """Sorted ``(epoch ms, value)`` pairs, dropping nulls and non-numbers (a gap in an aggregate)."""
    out = []
    for point in points:
        try:
            when, value = point
        except (TypeError, ValueError):
            continue
        ms = _ms(when)
        if ms is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            continue
        out.append((ms, float(value)))
    out.sort()
    if len(out) > MAX_POINTS:
        step = math.ceil(len(out) / MAX_POINTS)
        out = out[::step] + ([out[-1]] if (len(out) - 1) % step else [])
    return out


@dataclasses.dataclass
class Series:
    name: str
    label: str
    colour: str
    dashed: bool
    points: list[tuple[int, float]]

    @property
    def last(self) -> float:
        return self.points[-1][1]

    @property
    def low(self) -> float:
        return min(v for _, v in self.points)

    @property
    def high(self) -> float:
        return max(v for _, v in self.points)


@dataclasses.dataclass
class Chart:
    title: str
    unit: str
    series: list[Series]
    svg: SafeString


def _number(value: float, span: float) -> str:
    """A tick label: whole numbers unless the axis spans less than ten units."""
    if span >= 10:
        return formats.number_format(round(value), 0)
    return formats.number_format(value, 1)


def _time_label(ms: int, span_ms: int) -> str:
    moment = timezone.localtime(dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC))
    fmt = "H:i" if span_ms <= 20 * 3600 * 1000 else "SHORT_DATETIME_FORMAT"
    return formats.date_format(moment, fmt)


def _path(points: list[tuple[int, float]], x, y) -> str:
    """An SVG path; a silence longer than five typical intervals breaks the line."""
    if not points:
        return ""
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    typical = gaps[len(gaps) // 2] if gaps else 0
    parts = []
    previous = None
    for ms, value in points:
        command = "L"
        if previous is None or (typical and ms - previous > 5 * typical):
            command = "M"
        parts.append(f"{command}{x(ms):.1f},{y(value):.1f}")
        previous = ms
    return " ".join(parts)


def _render(title: str, unit: str, series: list[Series], start_ms: int, end_ms: int) -> SafeString:
    low = min(s.low for s in series)
    high = max(s.high for s in series)
    if high - low < 1e-9:
        low, high = low - 1, high + 1
    margin = (high - low) * 0.05
    low, high = low - margin, high + margin
    span = max(end_ms - start_ms, 1)
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM

    def x(ms: int) -> float:
        return PAD_LEFT + (ms - start_ms) / span * plot_w

    def y(value: float) -> float:
        return PAD_TOP + (high - value) / (high - low) * plot_h

    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        value = low + (high - low) * i / 4
        yy = y(value)
        out.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - PAD_RIGHT}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
            f'<text x="{PAD_LEFT - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(_number(value, high - low))}{escape(' ' + unit if unit and i == 4 else '')}</text>"
        )
    for i in range(5):
        ms = start_ms + span * i // 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(
            f'<text x="{x(ms):.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" class="tick">'
            f"{escape(_time_label(ms, span))}</text>"
        )
    for s in series:
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        if len(s.points) == 1:
            ms, value = s.points[0]
            out.append(f'<circle cx="{x(ms):.1f}" cy="{y(value):.1f}" r="3" fill="{s.colour}"/>')
        else:
            out.append(
                f'<path d="{_path(s.points, x, y)}" fill="none" stroke="{s.colour}" '
                f'stroke-width="2" vector-effect="non-scaling-stroke"{dash}>'
                f"<title>{escape(s.label)}</title></path>"
            )
    out.append("</svg>")
    return mark_safe("".join(out))  # noqa: S308 - every interpolated text is escaped above


def build_charts(series: Mapping[str, Iterable[Any]], *, start: dt.datetime, end: dt.datetime) -> list[Chart]:
    """One :class:`Chart` per unit, in the order of :data:`UNITS`; empty series are left out."""
    start_ms, end_ms = _ms(start), _ms(end)
    groups: dict[tuple[str, str], list[Series]] = {}
    for name in sorted(series):
        points = clean_points(series[name])
        if not points:
            continue
        unit, title = unit_of(name)
        groups.setdefault((unit, title), []).append(
            Series(name=name, label=label(name), colour="", dashed="_target" in name, points=points)
        )
    order = {str(title): i for i, (_, _, title) in enumerate(UNITS)}
    charts = []
    for (unit, title), members in sorted(groups.items(), key=lambda kv: (order.get(kv[0][1], 99), kv[0][1])):
        for i, s in enumerate(members):
            s.colour = PALETTE[i % len(PALETTE)]
        first = min(s.points[0][0] for s in members)
        last = max(s.points[-1][0] for s in members)
        lo, hi = min(start_ms or first, first), max(end_ms or last, last)
        charts.append(
            Chart(title=title, unit=unit, series=members, svg=_render(title, unit, members, lo, hi))
        )
    return charts
