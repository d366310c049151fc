"""What the machine page's telemetry charts show, prepared in ``devices/charts.py`` (no database).

The browser only draws it (``charts.js`` with the vendored uPlot); the window,
the y scale, the labels and the legend's numbers are decided here.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
from pathlib import Path

from django.utils import translation
from django.utils.functional import Promise
from hypothesis import given
from hypothesis import strategies as st

from devices import charts
from firmware_bridge import protocol

REPO = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
MS0 = int(T0.timestamp() * 1000)

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
non_negative_values = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)


def is_one_two_five(step: float) -> bool:
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m, rel_tol=1e-9) for m in (1, 2, 5, 10))


# ------------------------------------------------------------------ window


def test_the_window_fits_the_data():
    # Ten minutes of readings in the last three hours: the chart spans the ten minutes, not the three hours.
    points = [(MS0 + 10_000 * i, 200.0 + i) for i in range(60)]
    (chart,) = charts.build_charts({"temp_nozzle_c": points})
    assert chart.start == MS0
    assert chart.end == MS0 + 590_000
    data = chart.to_json()
    assert data["start"] == MS0 and data["end"] == MS0 + 590_000
    assert data["series"][0]["t"][0] == MS0


def test_a_chart_spans_every_series_it_holds():
    (chart,) = charts.build_charts(
        {
            "temp_bed_c": [(MS0 + 60_000, 60.0), (MS0 + 120_000, 61.0)],
            "temp_nozzle_c": [(MS0, 200.0), (MS0 + 90_000, 210)],
        }
    )
    assert (chart.start, chart.end) == (MS0, MS0 + 120_000)


# ------------------------------------------------------------------ y scale


@given(non_negative_values, non_negative_values)
def test_non_negative_units_never_get_negative_ticks(a, b):
    low, high = min(a, b), max(a, b)
    scale = charts.nice_scale(low, high, non_negative=True)
    assert scale.low == 0
    assert all(tick >= 0 for tick in scale.ticks)
    assert scale.high >= high


@given(finite, finite, st.booleans())
def test_ticks_are_one_two_five_steps_that_cover_the_data(a, b, non_negative):
    low, high = min(a, b), max(a, b)
    scale = charts.nice_scale(low, high, non_negative=non_negative)
    assert is_one_two_five(scale.step)
    # Within a millionth of a step (float rounding), the data lies between the first and last tick.
    assert scale.low <= low + scale.step * 1e-6 and scale.high >= high - scale.step * 1e-6
    assert 2 <= len(scale.ticks) <= 12
    # Every tick is a whole multiple of the step: 0, 20, 40 — never −121 or 37.5.
    for tick in scale.ticks:
        assert math.isclose(tick / scale.step, round(tick / scale.step), abs_tol=1e-6)


def test_a_feed_rate_chart_starts_at_zero_with_round_ticks():
    # What a newcomer saw: −121 mm/min and −5 % on the axes.
    assert charts.nice_scale(0, 3000, non_negative=True).ticks == [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert charts.nice_scale(95, 100, non_negative=True).ticks == [0, 20, 40, 60, 80, 100]
    assert charts.nice_scale(0, 0, non_negative=True).ticks == [0, 0.2, 0.4, 0.6, 0.8, 1]


def test_temperatures_may_go_below_zero_and_a_flat_line_gets_a_band():
    assert charts.nice_scale(-3.2, 40).ticks == [-10, 0, 10, 20, 30, 40]
    flat = charts.nice_scale(210, 210)
    assert flat.low < 210 < flat.high


def test_the_scale_the_page_gets_follows_the_unit():
    built = charts.build_charts(
        {
            "feed_mm_min": [(MS0, 1200.0), (MS0 + 1000, 1500.0)],
            "pos_x_mm": [(MS0, 12.0), (MS0 + 1000, 40.0)],
        }
    )
    by_unit = {c.unit: c.to_json() for c in built}
    assert by_unit["mm/min"]["non_negative"] is True and by_unit["mm/min"]["y"]["low"] == 0
    assert by_unit["mm"]["non_negative"] is False and by_unit["mm"]["y"]["low"] == 10


# ------------------------------------------------------------------ labels and units


def _telemetry_functions(tree: ast.AST) -> list[ast.AST]:
    """Functions that build a telemetry ``values`` dict: ``values: dict[str, float] = {}`` or ``values = {...}``."""
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            annotated = (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == "values"
                and ast.unparse(node.annotation) == "dict[str, float]"
            )
            literal = (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "values" for t in node.targets)
                and isinstance(node.value, ast.Dict)
            )
            if annotated or literal:
                found.append(func)
                break
    return found


def adapter_reading_names() -> set[str]:
    """Every reading name the project's adapters put into a telemetry ``values`` dict by its literal name.

    Names built with an f-string (OctoPrint's ``f"{prefix}_c"``) are the contract's
    vocabulary, which the test checks as a whole.
    """
    names: set[str] = set()
    for path in sorted((REPO / "firmware_bridge" / "adapters").rglob("*.py")):
        if path.name == "counter.py":  # the test and demo adapter, never for a real machine
            continue
        for func in _telemetry_functions(ast.parse(path.read_text(), str(path))):
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Dict)
                    and any(isinstance(t, ast.Name) and t.id == "values" for t in node.targets)
                ):
                    names.update(k.value for k in node.value.keys if isinstance(k, ast.Constant))
                for target in node.targets if isinstance(node, ast.Assign) else []:
                    if (
                        isinstance(target, ast.Subscript)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "values"
                        and isinstance(target.slice, ast.Constant)
                        and isinstance(target.slice.value, str)
                    ):
                        names.add(target.slice.value)
    return names


def test_every_reading_name_the_adapters_send_has_a_translated_label():
    sent = adapter_reading_names()
    # The scan finds what the GRBL and plug adapters add to the vocabulary (else it found nothing).
    assert {"rapid_override_pct", "spindle_override_pct", "voltage_v", "current_a", "power_w"} <= sent
    for name in sent | set(protocol.TELEMETRY_NAMES):
        assert name in charts.LABELS, f"{name} has no label in devices.charts.LABELS"
        assert isinstance(charts.LABELS[name], Promise), f"{name}'s label is not translatable"
        unit, _title = charts.unit_of(name)
        assert unit, f"{name} has no unit"
        assert charts.label(name) != name


def test_labels_and_titles_follow_the_language():
    with translation.override("nl"):
        assert charts.unit_of("temp_bed_c") == ("°C", "Temperaturen")
        assert charts.label("feed_override_pct") == "Voedingscorrectie"
    with translation.override("en"):
        assert charts.label("feed_override_pct") == "Feed override"


def test_a_name_nobody_translated_reads_as_words_with_its_unit():
    assert charts.label("chamber_fan_pct") == "Chamber fan"
    assert charts.unit_of("chamber_fan_pct") == ("%", "Percent")
    assert charts.non_negative("chamber_fan_pct")
    assert charts.label("lid") == "Lid"
    assert charts.unit_of("lid") == ("", "Lid")


def test_the_vocabulary_for_live_series_names_label_unit_and_chart():
    vocab = charts.vocabulary(["chamber_fan_pct"])
    assert vocab["rapid_override_pct"] == {
        "label": "Rapid override",
        "unit": "%",
        "title": "Percent",
        "chart": "pct",
        "non_negative": True,
        "dashed": False,
    }
    assert vocab["temp_bed_target_c"]["dashed"] is True
    assert vocab["chamber_fan_pct"]["chart"] == "pct"


# ------------------------------------------------------------------ series and legend


def test_charts_group_series_by_unit_and_drop_empty_ones():
    end = T0 + dt.timedelta(hours=1)
    built = charts.build_charts(
        {
            "temp_bed_c": [(T0, 60), (end, 61)],
            "temp_nozzle_c": [(T0.isoformat(), 200), (int(end.timestamp() * 1000), 210)],
            "power_w": [(T0, None), (end, "x")],
            "custom_thing": [(T0, 1), (end, 2)],
        }
    )
    assert [(c.title, c.unit, [s.name for s in c.series]) for c in built] == [
        ("Temperatures", "°C", ["temp_bed_c", "temp_nozzle_c"]),
        ("Custom thing", "", ["custom_thing"]),
    ]
    assert built[0].series[1].last == 210 and built[0].series[1].low == 200


def test_the_legend_now_is_the_live_reading_not_the_last_average():
    points = [(MS0, 200.0), (MS0 + 60_000, 204.0)]
    (chart,) = charts.build_charts({"temp_nozzle_c": points}, now={"temp_nozzle_c": 210.5})
    (series,) = chart.series
    assert series.now == 210.5
    assert series.legend == "now 210.5 °C (lowest 200.0, highest 204.0)"
    # Without a live reading, the last point.
    (chart,) = charts.build_charts({"temp_nozzle_c": points}, now={"temp_nozzle_c": "broken"})
    assert chart.series[0].now == 204.0


def test_the_legend_is_written_in_the_pages_language():
    (chart,) = charts.build_charts({"power_w": [(MS0, 1234.6), (MS0 + 1000, 20.25)]})
    with translation.override("nl"):
        # Rounded half away from zero, as Intl.NumberFormat in the browser: 20.25 → 20,3, 1234.6 → 1235.
        assert chart.series[0].legend == "nu 20,3 W (laagste 20,3, hoogste 1235)"


def test_a_long_silence_breaks_the_line():
    points = [(MS0 + i * 1000, float(i)) for i in range(10)] + [
        (MS0 + 3_600_000 + i * 1000, 1.0) for i in range(10)
    ]
    (chart,) = charts.build_charts({"power_w": points})
    values = chart.to_json()["series"][0]["v"]
    assert values.count(None) == 1
    assert len(values) == 21


def test_many_points_are_thinned():
    points = charts.clean_points([(MS0 + i, float(i)) for i in range(10_000)])
    assert len(points) <= charts.MAX_POINTS + 1
    assert points[0] == (MS0, 0.0) and points[-1] == (MS0 + 9_999, 9_999.0)


def test_bad_points_are_left_out_and_the_good_ones_kept():
    points = charts.clean_points(
        [
            (MS0, 1.0),
            (MS0 + 1, float("nan")),
            (MS0 + 2, True),
            ("not a time", 2.0),
            (None, 3.0),
            (MS0 + 3, 4.0),
            "x",
        ]
    )
    assert points == [(MS0, 1.0), (MS0 + 3, 4.0)]
