"""The plug adapters' shared logic: busy/idle hysteresis, the energy counter, option checks."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.adapters.plug_common import (
    BusyDetector,
    EnergyCounter,
    Thresholds,
    parse_on_off,
    validate_plug_options,
)

TH = Thresholds(on_w=100.0, off_w=50.0, on_s=5.0, off_s=30.0)

readings = st.floats(min_value=0, max_value=1e7, allow_nan=False, allow_infinity=False)
increments = st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=20)
gaps = st.floats(min_value=0.01, max_value=20.0, allow_nan=False)  # samples come in time order


# -- the energy counter ----------------------------------------------------------------------------


@given(st.lists(readings, min_size=1, max_size=60))
def test_energy_total_never_decreases_whatever_the_plug_reports(raws: list[float]) -> None:
    counter = EnergyCounter()
    totals = [counter.update(raw) for raw in raws]
    assert all(b >= a for a, b in itertools.pairwise(totals))
    assert totals[0] == raws[0]  # starts at the plug's own counter


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.lists(increments, min_size=1, max_size=8))
def test_energy_across_counter_resets_adds_up_every_segment(
    offset: float, segments: list[list[float]]
) -> None:
    """Each segment is the plug counting from zero after a reset (the first from ``offset``)."""
    counter = EnergyCounter(reset_tolerance_wh=1.0)
    expected = 0.0
    for i, incs in enumerate(segments):
        value = offset if i == 0 else 0.0
        # A segment that ends within the tolerance of where the next starts cannot be told from jitter.
        incs = [incs[0] + 2.0, *incs[1:]]
        counter.update(value)
        for inc in incs:
            value += inc
            counter.update(value)
        expected += value
    assert counter.resets == len(segments) - 1
    assert counter.total_wh == pytest.approx(expected, rel=1e-9, abs=1e-6)


@given(st.floats(min_value=10, max_value=1e6, allow_nan=False), st.floats(min_value=0, max_value=1.0))
def test_energy_small_drop_is_jitter_not_a_reset(start: float, drop: float) -> None:
    counter = EnergyCounter(reset_tolerance_wh=1.0)
    counter.update(start)
    assert counter.update(start - drop) == start
    assert counter.resets == 0
    assert counter.update(start + 5) == start + 5


def test_energy_counter_real_reset_to_zero() -> None:
    counter = EnergyCounter()
    counter.update(6294.0)
    counter.update(6300.5)
    assert counter.update(0.0) == 6300.5
    assert counter.update(12.0) == 6312.5
    assert counter.resets == 1


def test_energy_counter_state_carries_over_a_restart() -> None:
    first = EnergyCounter()
    assert first.state() is None
    first.update(6300.0)
    first.update(0.0)  # a reset while the bridge runs: base 6300
    first.update(40.0)
    saved = first.state()
    assert saved == {"base_wh": 6300.0, "last_raw_wh": 40.0}
    # The bridge restarts; the plug kept counting.
    second = EnergyCounter()
    assert second.restore(saved)
    assert second.update(55.0) == 6355.0
    # The bridge restarts again, and the plug's counter was reset while it was down.
    third = EnergyCounter()
    assert third.restore(second.state())
    assert third.update(3.0) == 6358.0
    assert third.resets == 1


@pytest.mark.parametrize(
    "bad",
    [None, [], {"base_wh": 1.0}, {"base_wh": -1.0, "last_raw_wh": 2.0}, {"base_wh": "1", "last_raw_wh": 2}],
)
def test_energy_counter_ignores_a_malformed_saved_state(bad: object) -> None:
    counter = EnergyCounter()
    assert not counter.restore(bad)
    assert counter.total_wh is None and counter.update(7.0) == 7.0


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "12", None, True])
def test_energy_rejects_impossible_readings_without_changing(bad: object) -> None:
    counter = EnergyCounter()
    counter.update(100.0)
    with pytest.raises(ValueError):
        counter.update(bad)  # type: ignore[arg-type]
    assert counter.total_wh == 100.0


# -- the busy/idle detector ------------------------------------------------------------------------


def _busy_detector() -> tuple[BusyDetector, float]:
    detector = BusyDetector(TH)
    assert detector.feed(0.0, 500.0) is None
    transition = detector.feed(TH.on_s, 500.0)
    assert transition is not None and transition.busy and detector.busy
    return detector, TH.on_s


@given(
    st.lists(st.tuples(gaps, st.floats(min_value=TH.off_w, max_value=TH.on_w, exclude_max=True)), max_size=80)
)
def test_no_flapping_for_power_oscillating_inside_the_band(samples: list[tuple[float, float]]) -> None:
    idle = BusyDetector(TH)
    busy, t0 = _busy_detector()
    t = t0
    for gap, power in samples:
        t += gap
        assert idle.feed(t, power) is None
        assert busy.feed(t, power) is None
        assert idle.tick(t + 1000) is None
        assert busy.tick(t + 1000) is None
    assert not idle.busy
    assert busy.busy


@given(st.lists(st.tuples(gaps, st.floats(min_value=0, max_value=2000, allow_nan=False)), max_size=120))
def test_transitions_follow_the_thresholds_and_hold_times(samples: list[tuple[float, float]]) -> None:
    """Against the definition: every transition is backed by a long enough run, and none is missed."""
    detector = BusyDetector(TH)
    history: list[tuple[float, float]] = []
    busy = False
    t = 0.0
    for gap, power in samples:
        t += gap
        history.append((t, power))
        transition = detector.feed(t, power)
        if transition is None:
            continue
        assert transition.busy is not busy  # transitions alternate
        busy = transition.busy
        hold = TH.on_s if busy else TH.off_s
        run = [p for ts, p in history if transition.edge_t <= ts <= t]
        assert t - transition.edge_t >= hold
        assert all((p >= TH.on_w) if busy else (p < TH.off_w) for p in run)
    assert detector.busy is busy
    # Eager: no run that already satisfies the current state's exit condition for long enough is pending.
    exit_ok = (lambda p: p < TH.off_w) if busy else (lambda p: p >= TH.on_w)
    run_start = None
    for ts, p in reversed(history):
        if not exit_ok(p):
            break
        run_start = ts
    if run_start is not None:
        assert t - run_start < (TH.off_s if busy else TH.on_s)


def test_busy_needs_on_s_and_idle_needs_off_s_and_edges_date_the_job() -> None:
    detector = BusyDetector(TH)
    assert detector.feed(10.0, 800.0, energy_wh=1000.0) is None
    assert detector.feed(12.0, 900.0, energy_wh=1000.5) is None
    started = detector.feed(15.0, 850.0, energy_wh=1001.2)
    assert started is not None and started.busy
    assert started.edge_t == 10.0 and started.edge_energy_wh == 1000.0
    # A pause at the exhaust's draw (inside the band) does not end the job.
    assert detector.feed(100.0, 120.0) is None
    assert detector.feed(200.0, 10.0, energy_wh=1030.0) is None
    assert detector.feed(210.0, 900.0) is None  # back above off_w: the off timer restarts
    assert detector.feed(220.0, 10.0, energy_wh=1040.0) is None
    assert detector.tick(249.9) is None
    finished = detector.tick(250.0)
    assert finished is not None and not finished.busy
    assert finished.edge_t == 220.0 and finished.edge_energy_wh == 1040.0


def test_short_spike_is_not_a_job() -> None:
    detector = BusyDetector(TH)
    assert detector.feed(0.0, 1200.0) is None
    assert detector.feed(4.9, 1200.0) is None
    assert detector.feed(5.0, 15.0) is None
    assert detector.tick(100.0) is None
    assert not detector.busy


def test_force_idle_ends_a_busy_period_at_once() -> None:
    detector, t = _busy_detector()
    transition = detector.force_idle(t + 1, energy_wh=5.0)
    assert transition is not None and not transition.busy and transition.edge_t == t + 1
    assert detector.force_idle(t + 2) is None


def test_zero_hold_times_switch_on_the_sample() -> None:
    detector = BusyDetector(Thresholds(on_w=10, off_w=5, on_s=0, off_s=0))
    assert detector.feed(1.0, 20.0) is not None
    assert detector.feed(2.0, 1.0) is not None


# -- options ---------------------------------------------------------------------------------------


def test_thresholds_from_options_and_defaults() -> None:
    assert Thresholds.from_options({"on_w": 300, "off_w": 30}) == Thresholds(300, 30, 5, 30)
    with pytest.raises(ValueError):
        Thresholds(on_w=10, off_w=10)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "topic is missing"),
        ({"topic": ""}, "topic must be a non-empty string"),
        ({"topic": 7}, "topic must be a non-empty string"),
        ({"topic": "tasmota/#"}, "plain MQTT topic part"),
        ({"topic": "tasmota_1/"}, "must not end with '/'"),
        ({"topic": "t", "on_w": "high"}, "on_w must be a number >= 0, got 'high'"),
        ({"topic": "t", "off_w": -5}, "off_w must be a number >= 0, got -5"),
        ({"topic": "t", "on_s": True}, "on_s must be a number >= 0, got True"),
        ({"topic": "t", "off_s": math.nan}, "off_s must be a number >= 0"),
        ({"topic": "t", "on_w": 40, "off_w": 60}, "off_w (60) must be below on_w (40)"),
        ({"topic": "t", "confirm_timeout_s": 0}, "confirm_timeout_s must be a number > 0"),
        ({"topic": "t", "on_W": 40}, "unknown option 'on_W'"),
    ],
)
def test_validate_options_names_each_wrong_value(options: dict[str, object], fragment: str) -> None:
    problems = validate_plug_options(options, required={"topic": "the plug's topic"})
    assert len(problems) == 1, problems
    assert fragment in problems[0]


def test_validate_options_reports_every_problem_at_once() -> None:
    problems = validate_plug_options({"on_w": -1, "off_s": "x", "extra": 1}, required={"topic": "t"})
    assert len(problems) == 4, problems


def test_validate_options_accepts_a_good_config() -> None:
    options = {"topic": "tasmota_1A2B3C", "on_w": 300, "off_w": 30.5, "on_s": 5, "off_s": 60}
    assert validate_plug_options(options, required={"topic": "t"}) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ON", True),
        ("off", False),
        (b"On", True),
        ("1", True),
        (0, False),
        (True, True),
        ("maybe", None),
        (2, None),
    ],
)
def test_parse_on_off(value: object, expected: bool | None) -> None:
    assert parse_on_off(value) is expected
