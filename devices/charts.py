"""The telemetry charts of a machine's live page: what they show, prepared on the server.

The page draws them in the browser with the vendored uPlot
(``fablab/static/vendor/uplot/``, driven by ``devices/static/devices/charts.js``);
this module decides everything a lab manager reads on them, so that it is
the same in every browser and testable here:

* one chart per unit (the unit is the telemetry name's suffix: ``temp_nozzle_c``
  is in °C), with a translated title, and a translated label per series; a
  name no one translated (an adapter's own) gets a readable label made from it;
* the time window fitted to the data: from the first point in the chosen
  period to the last, not the period's start;
* a y scale with 1-2-5 ticks that never goes below 0 for quantities that
  cannot be negative (%, mm/min, rpm, W, Wh, s, V, A) unless the data does;
* each series' latest value (the machine's live status, the number the card
  above shows), lowest and highest, as text for the legend and screen readers;
* a null between two points further apart than five typical intervals, so a
  silence breaks the line (uPlot joins the other missing points).

``charts.js`` mirrors :func:`nice_scale` to rescale as live points arrive.
Input points: ``(when, value)`` where ``when`` is epoch ms, a datetime or an ISO 8601 string.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

from django.utils import formats, timezone
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

#: Safety net: the store averages a period into a few hundred points already.
MAX_POINTS = 600
#: A silence longer than this many typical intervals breaks a series' line.
GAP_FACTOR = 5
#: About this many y ticks per chart (1-2-5 steps give 4 to 10).
TARGET_TICKS = 5
#: Colours with at least 3:1 contrast on white; targets are dashed too.
PALETTE = ["#0b57a4", "#b3261e", "#2e7d46", "#8a4b00", "#6a3d9a", "#00707a"]


@dataclasses.dataclass(frozen=True)
class Unit:
    suffix: str
    unit: str
    title: Any  # a lazy translation
    non_negative: bool


#: The units a reading name may end in; the longest matching suffix wins (``_mm_min`` before ``_mm``).
UNITS = [
    Unit("_c", "°C", _("Temperatures"), False),
    Unit("_pct", "%", _("Percent"), True),
    Unit("_mm_min", "mm/min", _("Feed"), True),
    Unit("_rpm", "rpm", _("Spindle"), True),
    Unit("_w", "W", _("Power"), True),
    Unit("_wh", "Wh", _("Energy"), True),
    Unit("_v", "V", _("Voltage"), True),
    Unit("_a", "A", pgettext_lazy("electric current", "Current"), True),
    Unit("_mm", "mm", _("Position"), False),
    Unit("_s", "s", _("Time"), True),
]
_BY_SUFFIX = sorted(UNITS, key=lambda u: len(u.suffix), reverse=True)

#: Every name of the contract's vocabulary and every name the project's adapters send.
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
    "voltage_v": _("Voltage"),
    "current_a": pgettext_lazy("electric current", "Current"),
    "feed_mm_min": _("Feed rate"),
    "spindle_rpm": _("Spindle speed"),
    "laser_power_pct": _("Laser power"),
    "pos_x_mm": _("X"),
    "pos_y_mm": _("Y"),
    "pos_z_mm": _("Z"),
    "feed_override_pct": _("Feed override"),
    "rapid_override_pct": _("Rapid override"),
    "spindle_override_pct": _("Spindle override"),
}


def _unit(name: str) -> Unit | None:
    for unit in _BY_SUFFIX:
        if name.endswith(unit.suffix) and len(name) > len(unit.suffix):
            return unit
    return None


def label(name: str) -> str:
    """The reading's translated label; for a name nobody translated, one made from it.

    ``rapid_override_pct`` without a translation would read "Rapid override":
    the unit suffix dropped, underscores as spaces, a capital first letter.
    """
    known = LABELS.get(name)
    if known is not None:
        return str(known)
    unit = _unit(name)
    stem = name[: -len(unit.suffix)] if unit else name
    words = " ".join(part for part in stem.split("_") if part)
    return (words[:1].upper() + words[1:]) if words else name


def unit_of(name: str) -> tuple[str, str]:
    """``(unit, chart title)`` for a telemetry name; names without a known unit chart alone."""
    unit = _unit(name)
    if unit is None:
        return "", label(name)
    return unit.unit, str(unit.title)


def non_negative(name: str) -> bool:
    """True when the reading's quantity cannot be below zero (its axis starts at 0)."""
    unit = _unit(name)
    return bool(unit and unit.non_negative)


def format_value(value: float) -> str:
    """A reading as the card and the legend write it: one decimal, none from 1,000 on.

    Rounded half away from zero on the float's exact value, as the browser's
    ``Intl.NumberFormat`` does in ``board.js`` and ``charts.js`` (Django's
    ``number_format`` alone would cut 210.56 to "210.5").
    """
    digits = 0 if abs(value) >= 1000 else 1
    rounded = decimal.Decimal(value).quantize(
        decimal.Decimal(1).scaleb(-digits), rounding=decimal.ROUND_HALF_UP
    )
    return formats.number_format(rounded, digits, use_l10n=True)


# ---------------------------------------------------------------------------- scales


@dataclasses.dataclass(frozen=True)
class Scale:
    """A y axis: from ``low`` to ``high`` in ticks of ``step`` (a 1, 2 or 5 times a power of ten)."""

    low: float
    high: float
    step: float

    @property
    def ticks(self) -> list[float]:
        count = round((self.high - self.low) / self.step)
        return [_tidy(self.low + i * self.step, self.step) for i in range(count + 1)]


def _tidy(value: float, step: float) -> float:
    """``value`` rounded to the step's decimals, so 0.1 + 0.2 shows as 0.3 (and -0.0 as 0)."""
    decimals = max(0, -math.floor(math.log10(step))) + 1
    return round(value, decimals) + 0.0


def nice_step(span: float, target: int = TARGET_TICKS) -> float:
    """The 1-2-5 step (times a power of ten) that cuts ``span`` into about ``target`` intervals.

    The raw step ``span / target`` is rounded to the nearest of 1, 2, 5 and 10
    (thresholds 1.5, 3 and 7, as in Heckbert's "nice numbers").
    """
    raw = span / max(target, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    fraction = raw / power
    for limit, mult in ((1.5, 1), (3, 2), (7, 5)):
        if fraction < limit:
            return mult * power
    return 10 * power


def nice_scale(low: float, high: float, *, non_negative: bool = False) -> Scale:
    """The y axis for data from ``low`` to ``high``: bounds on whole ticks of a 1-2-5 step.

    ``non_negative``: the axis starts at 0 (or lower only if the data does), so
    a power or a percentage is never drawn against negative ticks. A flat
    series gets a band around its value.
    """
    if non_negative:
        low = min(0.0, low)
    if high - low < 1e-9 * max(1.0, abs(high)):
        pad = abs(high) * 0.05 or 1.0
        high = high + pad
        low = low if non_negative and low >= 0 else low - pad
        if non_negative and low > 0:
            low = 0.0
    step = nice_step(high - low)
    lo = math.floor(low / step + 1e-9) * step
    hi = math.ceil(high / step - 1e-9) * step
    return Scale(_tidy(lo, step), _tidy(hi, step), step)


# ---------------------------------------------------------------------------- series


def _ms(when: Any) -> int | None:
    if isinstance(when, bool):
        return None
    if isinstance(when, int | float):
        return int(when) if math.isfinite(when) else None
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


def reading_value(raw: Any) -> float | None:
    """A reading as the live status holds it: a number, or ``{"value": n, ...}``; None otherwise."""
    if isinstance(raw, dict):
        raw = raw.get("value", raw.get("v"))
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw)


def clean_points(points: Iterable[Any]) -> list[tuple[int, float]]:
    """Sorted ``(epoch ms, value)`` pairs, dropping nulls and non-numbers (a gap in an aggregate)."""
    out = []
    for point in points:
        try:
            when, value = point
        except (TypeError, ValueError):
            continue
        ms = _ms(when)
        number = reading_value(value) if not isinstance(value, dict) else None
        if ms is None or number is None:
            continue
        out.append((ms, number))
    out.sort()
    if len(out) > MAX_POINTS:
        step = math.ceil(len(out) / MAX_POINTS)
        out = out[::step] + ([out[-1]] if (len(out) - 1) % step else [])
    return out


def with_gaps(points: list[tuple[int, float]]) -> list[tuple[int, float | None]]:
    """``points`` with a ``None`` between two that are more than :data:`GAP_FACTOR` typical intervals apart."""
    if len(points) < 3:
        return list(points)
    intervals = sorted(b[0] - a[0] for a, b in itertools.pairwise(points))
    typical = intervals[len(intervals) // 2]
    out: list[tuple[int, float | None]] = [points[0]]
    for previous, point in itertools.pairwise(points):
        if typical and point[0] - previous[0] > GAP_FACTOR * typical:
            out.append(((previous[0] + point[0]) // 2, None))
        out.append(point)
    return out


@dataclasses.dataclass
class Series:
    name: str
    label: str
    colour: str
    dashed: bool
    points: list[tuple[int, float]]
    #: The latest value: the live status's reading when it has one, else the last point.
    now: float = 0.0
    unit: str = ""

    @property
    def last(self) -> float:
        return self.points[-1][1]

    @property
    def low(self) -> float:
        return min(v for _, v in self.points)

    @property
    def high(self) -> float:
        return max(v for _, v in self.points)

    @property
    def legend(self) -> str:
        """The legend's text (translated, localised): now, lowest and highest."""
        return legend_text(self.now, self.low, self.high, self.unit)


@dataclasses.dataclass
class Chart:
    key: str
    title: str
    unit: str
    non_negative: bool
    series: list[Series]

    @property
    def start(self) -> int:
        """The window's first instant (epoch ms): the first point, not the period's start."""
        return min(s.points[0][0] for s in self.series)

    @property
    def end(self) -> int:
        return max(s.points[-1][0] for s in self.series)

    @property
    def scale(self) -> Scale:
        return nice_scale(
            min(s.low for s in self.series),
            max(s.high for s in self.series),
            non_negative=self.non_negative,
        )

    def to_json(self) -> dict[str, Any]:
        """What ``charts.js`` draws: the window, the scale and each series (nulls break lines)."""
        scale = self.scale
        return {
            "key": self.key,
            "title": self.title,
            "unit": self.unit,
            "non_negative": self.non_negative,
            "start": self.start,
            "end": self.end,
            "y": {"low": scale.low, "high": scale.high, "step": scale.step},
            "series": [
                {
                    "name": s.name,
                    "label": s.label,
                    "colour": s.colour,
                    "dashed": s.dashed,
                    "now": s.now,
                    "t": [t for t, _ in with_gaps(s.points)],
                    "v": [v for _, v in with_gaps(s.points)],
                }
                for s in self.series
            ],
        }


def legend_text(now: float, low: float, high: float, unit: str) -> str:
    """The legend's sentence; ``charts.js`` fills the same translated template (``strings.legend``)."""
    return gettext("now %(last)s %(unit)s (lowest %(low)s, highest %(high)s)") % {
        "last": format_value(now),
        "unit": unit,
        "low": format_value(low),
        "high": format_value(high),
    }


def chart_key(name: str) -> str:
    """The chart a series belongs to: its unit suffix, or the name itself when it has no known unit."""
    unit = _unit(name)
    return unit.suffix.lstrip("_") if unit else f"name-{name}"


def build_charts(series: Mapping[str, Iterable[Any]], *, now: Mapping[str, Any] | None = None) -> list[Chart]:
    """One :class:`Chart` per unit, in the order of :data:`UNITS`; empty series are left out.

    ``now``: the machine's live readings (``MachineStatus.last_reading``, what the
    card shows): each series' latest value is taken from there, so legend and card agree.
    """
    now = now or {}
    groups: dict[str, list[Series]] = {}
    for name in sorted(series):
        points = clean_points(series[name])
        if not points:
            continue
        live = reading_value(now.get(name))
        groups.setdefault(chart_key(name), []).append(
            Series(
                name=name,
                label=label(name),
                colour="",
                dashed="_target" in name,
                points=points,
                now=points[-1][1] if live is None else live,
                unit=unit_of(name)[0],
            )
        )
    order = {unit.suffix.lstrip("_"): i for i, unit in enumerate(UNITS)}
    charts = []
    for key, members in sorted(groups.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
        for i, s in enumerate(members):
            s.colour = PALETTE[i % len(PALETTE)]
        unit, title = unit_of(members[0].name)
        charts.append(
            Chart(key=key, title=title, unit=unit, non_negative=non_negative(members[0].name), series=members)
        )
    return charts


def vocabulary(names: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Label, unit, chart and colour facts of every known name and of ``names``, for live series."""
    out = {}
    for name in sorted(set(LABELS) | set(names)):
        unit, title = unit_of(name)
        out[name] = {
            "label": label(name),
            "unit": unit,
            "title": title,
            "chart": chart_key(name),
            "non_negative": non_negative(name),
            "dashed": "_target" in name,
        }
    return out
