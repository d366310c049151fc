"""The raw report figures (fablab.reports.metrics.year_cells) on hand-built rollup rows with known answers.

The rows are written straight into MachineDay / MemberDay (the rollup itself is tested apart; the energy
of a machine without a meter starts from its usage sessions), so each expected value below can be
checked by hand from the rows of the test.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from devices.models import UsageSession
from fablab.reports import rollup
from fablab.reports.cells import PROVISIONAL, Period
from fablab.reports.metrics import TABLES, table_of, year_cells
from fablab.reports.models import MachineDay, MemberDay, Subject
from fablab.trainings.models import Initiative
from tests.factories import LabFactory, MachineFactory, MachineTypeFactory, ProgrammeFactory, TrainingFactory

pytestmark = pytest.mark.django_db

D = dt.date
TODAY = D(2027, 3, 1)  # nothing of 2026 is provisional unless a test says so


def hours(**by_hour: float) -> list[float]:
    """A used_by_hour list: ``hours(h10=2)`` is 2 h in the 10:00 hour."""
    row = [0.0] * 24
    for key, value in by_hour.items():
        row[int(key[1:])] = value
    return row


@pytest.fixture
def world():
    """Labs alpha and beta (the scope) and gamma (outside it); a laser needing a training, a printer."""
    alpha, beta, gamma = (LabFactory(slug=s, hours=False) for s in ("alpha", "beta", "gamma"))
    laser, printer = MachineTypeFactory(slug="laser", name="Laser"), MachineTypeFactory(slug="printer")
    safety = TrainingFactory(slug="laser-safety")
    w = type("World", (), {})()
    w.alpha, w.beta, w.gamma, w.safety = alpha, beta, gamma, safety
    w.laser1 = MachineFactory(lab=alpha, slug="laser1", machine_type=laser, required_training=safety)
    w.printer1 = MachineFactory(lab=alpha, slug="printer1", machine_type=printer)
    w.laser2 = MachineFactory(lab=beta, slug="laser2", machine_type=laser, required_training=safety)
    w.laser3 = MachineFactory(lab=gamma, slug="laser3", machine_type=laser)
    w.scope = [alpha, beta]
    return w


def subjects(n: int) -> list[Subject]:
    return [Subject.objects.create() for _ in range(n)]


def use(subject, machine, day, **fields):
    return MemberDay.objects.create(
        subject=subject, lab=machine.lab, machine=machine, day=day, kind=MemberDay.Kind.USE, **fields
    )


def find(cells, period, metric, lab="", machine_type="", machine="", dimension="", category=""):
    key = (str(period), lab, machine_type, machine, dimension, category, metric)
    found = [c for c in cells if c.key == key]
    assert len(found) == 1, f"{key}: {len(found)} cells"
    return found[0]


def grain(period: str) -> str:
    return Period.parse(period).grain


def value(cells, period, metric, **where):
    return find(cells, period, metric, **where).value


# --- machine metrics ---------------------------------------------------------------------------------


@pytest.fixture
def machine_days(world):
    w = world
    MachineDay.objects.create(
        machine=w.laser1,
        day=D(2026, 2, 2),  # a Monday
        open_h=12,
        plan_down_h=2,
        unpl_down_h=1,
        booked_h=6,
        released_h=1,
        used_h=5,
        busy_h=4,
        realised_h=4,
        walk_in_h=1,
        overrun_h=0.5,
        training_h=1,
        workshop_h=2,
        maintenance_h=0.5,
        energy_kwh=3,
        energy_used_h=4,
        bookings_made=5,
        bookings_kept=4,
        no_shows=1,
        late_cancels=1,
        jobs_with_outcome=4,
        jobs_finished=3,
        used_by_hour=hours(h10=2, h11=3),
    )
    MachineDay.objects.create(
        machine=w.laser1, day=D(2026, 2, 3), open_h=12, booked_h=2, used_h=1, used_by_hour=hours(h14=1)
    )
    MachineDay.objects.create(
        machine=w.laser1,
        day=D(2026, 4, 6),  # a Monday, bookable around the clock that day
        around_the_clock=True,
        open_h=24,
        used_h=2,
        busy_h=2,
        used_by_hour=hours(h10=2),
    )
    MachineDay.objects.create(machine=w.printer1, day=D(2026, 2, 2), open_h=8, used_h=5, used_by_hour=[])
    MachineDay.objects.create(
        machine=w.laser2, day=D(2026, 2, 2), open_h=8, used_h=4, used_by_hour=hours(h10=4)
    )
    # Outside the scope (gamma) and outside the year: never counted.
    MachineDay.objects.create(machine=w.laser3, day=D(2026, 2, 2), open_h=100, used_h=100)
    MachineDay.objects.create(machine=w.laser1, day=D(2025, 12, 31), open_h=100, used_h=100)
    return w


@pytest.fixture
def machine_cells(machine_days):
    """The year's raw cells of :func:`machine_days`."""
    return year_cells(2026, machine_days.scope, today=TODAY)


def test_machine_metrics_of_one_machine_month(machine_cells):
    at = {"lab": "alpha", "machine_type": "laser", "machine": "laser1"}
    expected = {
        "open_hours": 24.0,
        "planned_downtime_hours": 2.0,
        "net_available_hours": 22.0,
        "unplanned_downtime_hours": 1.0,
        "availability": 95.5,  # (22 − 1) / 22
        "booked_hours": 8.0,
        "booking_utilisation": 36.4,  # 8 / 22
        "released_hours": 1.0,  # given back by a no-show, still booked
        "used_hours": 6.0,
        "usage_utilisation": 27.3,  # 6 / 22
        "busy_hours": 4.0,
        "busy_share": 66.7,  # 4 / 6
        "realised_hours": 4.0,
        "booking_realisation": 50.0,  # 4 / 8
        "energy": 3.0,
        "energy_per_used_hour": 0.75,  # 3 kWh over the 4 h that had a reading
        "training_hours": 1.0,
        "workshop_hours": 2.0,
        "maintenance_hours": 0.5,
        "bookable_around_the_clock": 0,
    }
    for metric, want in expected.items():
        assert value(machine_cells, "2026-02", metric, **at) == want, metric
    # Units come from the definitions.
    assert find(machine_cells, "2026-02", "availability", **at).unit == "%"
    assert find(machine_cells, "2026-02", "energy", **at).unit == "kWh"
    assert find(machine_cells, "2026-02", "energy_per_used_hour", **at).unit == "kWh/h"


def test_booking_counts_and_their_rates_stop_at_the_type(machine_cells):
    at = {"lab": "alpha", "machine_type": "laser"}
    assert value(machine_cells, "2026-02", "bookings_kept", **at) == 4
    assert value(machine_cells, "2026-02", "no_shows", **at) == 1
    assert value(machine_cells, "2026-02", "no_show_rate", **at) == 25.0
    assert value(machine_cells, "2026-02", "bookings_made", **at) == 5
    assert value(machine_cells, "2026-02", "late_cancellation_rate", **at) == 20.0
    assert value(machine_cells, "2026-02", "walk_in_hours", **at) == 1.0
    assert value(machine_cells, "2026-02", "walk_in_share", **at) == 16.7  # 1 / 6
    assert value(machine_cells, "2026-02", "job_completion", **at) == 75.0
    assert value(machine_cells, "2026-02", "overrun_hours", **at) == 0.5
    machine_level = {c.metric for c in machine_cells if c.machine}
    assert not machine_level & {
        "no_shows",
        "no_show_rate",
        "walk_in_share",
        "job_completion",
        "overrun_hours",
    }
    assert {c.level for c in machine_cells if c.metric == "bookable_around_the_clock"} == {"machine"}


def test_levels_add_up_and_ratios_are_taken_after_summing(machine_cells):
    # Lab alpha, February: laser1 (24 h open, 2 planned down, 6 used) + printer1 (8 open, 5 used).
    assert value(machine_cells, "2026-02", "open_hours", lab="alpha") == 32.0
    assert value(machine_cells, "2026-02", "usage_utilisation", lab="alpha") == 36.7  # 11 / 30
    assert value(machine_cells, "2026-02", "used_hours", lab="alpha", machine_type="printer") == 5.0
    # The network is the scope: alpha and beta, not gamma.
    assert value(machine_cells, "2026-02", "open_hours") == 40.0
    assert value(machine_cells, "2026-02", "usage_utilisation") == 39.5  # 15 / 38
    # Months add up to the quarter and the year; December 2025 is not in 2026.
    assert (
        value(machine_cells, "2026-Q1", "used_hours", lab="alpha", machine_type="laser", machine="laser1")
        == 6.0
    )
    assert (
        value(machine_cells, "2026", "used_hours", lab="alpha", machine_type="laser", machine="laser1") == 8.0
    )
    assert (
        value(machine_cells, "2026", "usage_utilisation", lab="alpha", machine_type="laser", machine="laser1")
        == 17.4
    )
    assert not [c for c in machine_cells if c.machine == "laser3" or c.lab == "gamma"]


def test_no_denominator_gives_no_value_and_every_period_is_there(machine_cells):
    at = {"lab": "alpha", "machine_type": "printer", "machine": "printer1"}
    # No booking on the printer: no realisation rate (not 0 %); nothing at all in March.
    assert value(machine_cells, "2026-02", "booking_realisation", **at) is None
    assert value(machine_cells, "2026-03", "open_hours", **at) == 0.0
    assert value(machine_cells, "2026-03", "availability", **at) is None
    assert value(machine_cells, "2026-02", "energy_per_used_hour", **at) is None
    periods = {c.period for c in machine_cells if c.machine == "printer1" and c.metric == "open_hours"}
    assert len(periods) == 17  # the year, 4 quarters, 12 months


def test_a_machine_without_a_meter_has_no_energy_figure_not_zero():
    """Sessions without an energy reading, through the rollup: "no data", which 0 kWh would misstate."""
    lab = LabFactory(slug="delta")  # open 08:00–20:00
    printer = MachineTypeFactory(slug="printer")
    metered = MachineFactory(lab=lab, slug="metered", machine_type=printer)
    plain = MachineFactory(lab=lab, slug="plain", machine_type=printer)
    for machine, energy_wh in ((metered, 1500.0), (plain, None)):
        UsageSession.objects.create(
            machine=machine,
            started_at=dt.datetime(2026, 2, 2, 10, tzinfo=dt.UTC),
            ended_at=dt.datetime(2026, 2, 2, 12, tzinfo=dt.UTC),
            outcome=UsageSession.Outcome.FINISHED,
            energy_wh=energy_wh,
        )
    rollup.rebuild(D(2026, 2, 2), D(2026, 2, 2), now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    cells = year_cells(2026, [lab], today=TODAY)
    at = {"lab": "delta", "machine_type": "printer"}
    assert value(cells, "2026-02", "used_hours", machine="plain", **at) == 2.0
    assert value(cells, "2026-02", "energy", machine="plain", **at) is None
    assert value(cells, "2026", "energy", machine="plain", **at) is None
    assert value(cells, "2026-02", "energy_per_used_hour", machine="plain", **at) is None
    # Beside a machine with a meter, the lab's energy is what was measured.
    assert value(cells, "2026-02", "energy", machine="metered", **at) == 1.5
    assert value(cells, "2026-02", "energy", lab="delta") == 1.5


def test_around_the_clock_flag_is_set_by_any_flagged_day(machine_cells):
    at = {"lab": "alpha", "machine_type": "laser", "machine": "laser1"}
    flags = {
        p: value(machine_cells, p, "bookable_around_the_clock", **at)
        for p in ("2026-Q1", "2026-04", "2026-Q2", "2026")
    }
    assert flags == {"2026-Q1": 0, "2026-04": 1, "2026-Q2": 1, "2026": 1}


def test_users_are_distinct_members_on_the_cells_machines(machine_days):
    w = machine_days
    s1, s2, s3 = subjects(3)
    use(s1, w.laser1, D(2026, 2, 2))
    use(s1, w.laser1, D(2026, 2, 3))
    use(s1, w.printer1, D(2026, 2, 2))
    use(s2, w.laser1, D(2026, 2, 3))
    use(s1, w.laser2, D(2026, 2, 2))
    use(s3, w.laser3, D(2026, 2, 2))  # outside the scope
    cells = year_cells(2026, w.scope, today=TODAY)
    laser1 = {"lab": "alpha", "machine_type": "laser", "machine": "laser1"}
    assert find(cells, "2026-02", "used_hours", **laser1).users == 2
    assert find(cells, "2026-02", "open_hours", **laser1).users == 2
    assert (
        find(cells, "2026-02", "used_hours", lab="alpha", machine_type="printer", machine="printer1").users
        == 1
    )
    assert find(cells, "2026-02", "used_hours", lab="alpha").users == 2
    assert find(cells, "2026-02", "used_hours", lab="beta").users == 1
    assert find(cells, "2026-02", "used_hours").users == 2  # s1 in both labs counts once
    assert find(cells, "2026-04", "used_hours", **laser1).users == 0
    assert find(cells, "2026-02", "used_hours", **laser1).people is None


def test_heatmap_by_weekday_and_hour(machine_cells):
    heat = [c for c in machine_cells if c.dimension == "weekday_hour"]
    assert {c.period for c in heat} == {"2026", "2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"}
    assert {c.lab for c in heat} == {"", "alpha", "beta"}
    per_table = Counter((c.lab, c.period) for c in heat)
    assert set(per_table.values()) == {168}
    assert {c.metric for c in heat} == {"used_hours"} and {c.people for c in heat} == {None}

    def cell(period, category, lab="alpha"):
        return value(
            machine_cells, period, "used_hours", lab=lab, dimension="weekday_hour", category=category
        )

    assert cell("2026-Q1", "0-10") == 2.0  # Monday 10:00 on laser1 (the printer's day has no hours)
    assert cell("2026-Q1", "0-11") == 3.0
    assert cell("2026-Q1", "1-14") == 1.0  # Tuesday 3 February
    assert cell("2026-Q2", "0-10") == 2.0
    assert cell("2026", "0-10") == 4.0
    assert cell("2026-Q1", "0-10", lab="") == 6.0  # plus laser2 in beta
    assert cell("2026-Q1", "6-23") == 0.0
    assert table_of(heat[0]) == "heatmap"


# --- people --------------------------------------------------------------------------------------------


def test_active_makers_are_distinct_and_never_summed_over_labs(world):
    w = world
    s1, s2, s3 = subjects(3)
    use(s1, w.laser1, D(2026, 2, 2))
    use(s1, w.printer1, D(2026, 2, 2))
    use(s1, w.laser2, D(2026, 2, 9))
    use(s1, w.laser1, D(2026, 3, 2))
    use(s2, w.laser2, D(2026, 5, 4))
    use(s3, w.laser3, D(2026, 2, 2))  # gamma is outside the scope
    cells = year_cells(2026, w.scope, today=TODAY)
    assert value(cells, "2026-02", "active_makers", lab="alpha") == 1
    assert value(cells, "2026-02", "active_makers", lab="beta") == 1
    assert value(cells, "2026-02", "active_makers") == 1
    assert value(cells, "2026-Q1", "active_makers") == 1
    assert value(cells, "2026", "active_makers", lab="beta") == 2
    assert value(cells, "2026", "active_makers") == 2
    assert find(cells, "2026", "active_makers").people == 2
    assert value(cells, "2026-07", "active_makers") == 0
    assert not [c for c in cells if c.metric == "active_makers" and c.machine_type]


def test_new_makers_count_the_first_use_anywhere(world):
    w = world
    old, moved, fresh = subjects(3)
    use(old, w.laser1, D(2025, 6, 1))  # active since 2025: never new in 2026
    use(old, w.laser1, D(2026, 2, 2))
    use(moved, w.laser3, D(2026, 2, 2))  # first use in February, at gamma (outside the scope)
    use(moved, w.laser1, D(2026, 3, 2))
    use(fresh, w.laser1, D(2026, 5, 4))
    use(fresh, w.laser2, D(2026, 6, 1))
    cells = year_cells(2026, w.scope, today=TODAY)
    # "moved" is new in February, when the scope did not see them, and in Q1 and 2026 where it did.
    assert value(cells, "2026-02", "new_makers") == 0
    assert value(cells, "2026-03", "new_makers", lab="alpha") == 0
    assert value(cells, "2026-Q1", "new_makers", lab="alpha") == 1
    assert value(cells, "2026-05", "new_makers", lab="alpha") == 1
    assert value(cells, "2026-06", "new_makers", lab="beta") == 0  # fresh's first use was in May
    assert value(cells, "2026-Q2", "new_makers", lab="beta") == 1
    assert value(cells, "2026", "new_makers") == 2
    assert value(cells, "2026", "active_makers") == 3


def test_returning_rate_looks_across_the_year_boundary(world):
    w = world
    a, b, c, d = subjects(4)
    use(a, w.laser1, D(2025, 11, 3))  # Q4 2025
    use(b, w.laser1, D(2025, 5, 5))  # Q2 2025
    use(c, w.laser1, D(2025, 12, 1))  # Q4 2025, gone in 2026
    use(a, w.laser1, D(2026, 1, 12))
    use(b, w.laser1, D(2026, 2, 2))
    use(d, w.laser1, D(2026, 4, 6))
    use(a, w.laser1, D(2026, 5, 4))
    use(b, w.laser2, D(2025, 11, 3))  # at another lab: not returning to alpha
    cells = year_cells(2026, w.scope, today=TODAY)
    at = {"lab": "alpha"}
    assert value(cells, "2026-Q1", "returning_makers", **at) == 1  # a: Q4 2025 and Q1 2026
    assert value(cells, "2026-Q1", "returning_rate", **at) == 50.0  # of a and c
    assert find(cells, "2026-Q1", "returning_rate", **at).people == 2
    assert value(cells, "2026-Q2", "returning_rate", **at) == 50.0  # a of a, b
    assert value(cells, "2026", "returning_makers", **at) == 2  # a, b
    assert value(cells, "2026", "returning_rate", **at) == pytest.approx(66.7)
    assert value(cells, "2026-Q3", "returning_rate", **at) == 0.0  # a, d in Q2; nobody in Q3
    assert value(cells, "2026-Q1", "returning_rate", lab="beta") == 0.0  # b used beta in Q4 2025, not since
    assert value(cells, "2026-Q1", "returning_rate", lab="beta") == 0.0
    assert {(c.level, grain(c.period)) for c in cells if c.metric == "returning_rate"} == {
        ("lab", "quarter"),
        ("lab", "year"),
    }


def test_median_hours_per_maker(world):
    w = world
    s1, s2, s3, s4 = subjects(4)
    use(s1, w.laser1, D(2026, 2, 2), used_h=2)
    use(s1, w.printer1, D(2026, 2, 2), used_h=3)
    use(s2, w.laser1, D(2026, 2, 3), used_h=1)
    use(s3, w.laser1, D(2026, 3, 3), used_h=10)
    use(s2, w.laser1, D(2026, 4, 7), used_h=20)
    use(s4, w.laser1, D(2026, 5, 5), used_h=30)
    cells = year_cells(2026, w.scope, today=TODAY)
    assert value(cells, "2026-Q1", "median_hours_per_maker", lab="alpha") == 5.0  # 1, 5, 10
    assert find(cells, "2026-Q1", "median_hours_per_maker", lab="alpha").people == 3
    assert value(cells, "2026-Q2", "median_hours_per_maker", lab="alpha") == 25.0  # 20, 30
    assert value(cells, "2026", "median_hours_per_maker", lab="alpha") == 15.5  # 5, 10, 21, 30
    assert value(cells, "2026-Q3", "median_hours_per_maker", lab="alpha") is None
    assert {(c.level, grain(c.period)) for c in cells if c.metric == "median_hours_per_maker"} == {
        ("lab", "quarter"),
        ("lab", "year"),
    }


def test_visits_count_member_lab_days(world):
    w = world
    s1, s2 = subjects(2)
    use(s1, w.laser1, D(2026, 2, 2))
    use(s1, w.printer1, D(2026, 2, 2))
    MemberDay.objects.create(subject=s1, lab=w.alpha, day=D(2026, 2, 2), kind="workshop")
    use(s1, w.laser2, D(2026, 2, 2))
    use(s2, w.laser1, D(2026, 2, 3))
    use(s2, w.laser1, D(2026, 4, 7))
    cells = year_cells(2026, w.scope, today=TODAY)
    assert value(cells, "2026-02", "visits", lab="alpha") == 2
    assert find(cells, "2026-02", "visits", lab="alpha").people == 2
    assert value(cells, "2026-02", "visits", lab="alpha", machine_type="laser") == 2
    assert value(cells, "2026-02", "visits", lab="alpha", machine_type="printer") == 1
    assert value(cells, "2026-02", "visits") == 3  # (s1, alpha), (s1, beta), (s2, alpha)
    assert find(cells, "2026-02", "visits").people == 2
    assert value(cells, "2026", "visits", lab="alpha") == 3
    assert not [c for c in cells if c.metric == "visits" and c.machine]


def test_trainings_and_certifications(world):
    w = world
    t1, t2, t3 = subjects(3)
    train = {"kind": "training", "training": w.safety, "day": D(2026, 3, 2)}
    MemberDay.objects.create(subject=t1, lab=w.alpha, certified=True, **train)
    MemberDay.objects.create(subject=t2, lab=w.alpha, certified=True, **train)
    MemberDay.objects.create(subject=t3, lab=w.alpha, **train)
    MemberDay.objects.create(subject=t1, lab=w.beta, certified=True, **train)
    cells = year_cells(2026, w.scope, today=TODAY)
    at = {"dimension": "training", "category": "laser-safety"}
    assert value(cells, "2026-03", "certifications_granted", lab="alpha", **at) == 2
    assert value(cells, "2026-03", "trainees", lab="alpha", **at) == 3
    assert value(cells, "2026-03", "certifications_granted", **at) == 3
    assert find(cells, "2026-03", "certifications_granted", **at).people == 2  # t1 twice
    assert value(cells, "2026", "trainees", **at) == 3
    assert value(cells, "2026-04", "trainees", lab="beta", **at) == 0
    assert table_of(find(cells, "2026", "trainees", **at)) == "trainings"


def test_training_to_use_within_90_days(world):
    w = world
    t = subjects(5)
    for s in t:
        MemberDay.objects.create(
            subject=s, lab=w.alpha, kind="training", training=w.safety, day=D(2026, 3, 1)
        )
    use(t[0], w.laser1, D(2026, 5, 30))  # day 90: counts
    use(t[1], w.laser1, D(2026, 5, 31))  # day 91: too late
    use(t[2], w.printer1, D(2026, 3, 5))  # a machine that does not need the training
    use(t[3], w.laser2, D(2026, 3, 10))  # another lab's machine needing it: counts
    use(t[4], w.laser1, D(2026, 2, 20))  # before the training
    cells = year_cells(2026, w.scope, today=TODAY)
    at = {"lab": "alpha", "dimension": "training", "category": "laser-safety"}
    assert value(cells, "2026", "trainees_using_within_90_days", **at) == 2
    assert value(cells, "2026", "training_to_use", **at) == 40.0
    assert find(cells, "2026", "training_to_use", **at).people == 5
    assert not [c for c in cells if c.metric == "training_to_use" and c.period != "2026"]


# --- tables by a personal attribute -------------------------------------------------------------------------


@pytest.fixture
def declared(world):
    w = world
    young = Initiative.objects.create(programme=ProgrammeFactory(), slug="young-makers", name="Young makers")
    women = Initiative.objects.create(
        programme=ProgrammeFactory(), slug="women-in-tech", name="Women in tech"
    )
    s1, s2, s3 = subjects(3)
    use(s1, w.laser1, D(2026, 2, 2), used_h=5, gender="woman", age_band="18-25", user_category="student")
    # s1's latest row of the quarter: the answer withdrawn (no consent any more).
    use(s1, w.laser1, D(2026, 3, 9), used_h=0)
    use(
        s2,
        w.laser1,
        D(2026, 2, 3),
        used_h=1,
        gender="man",
        user_category="company",
        declared_initiatives=[young.pk],
    )
    use(
        s3,
        w.laser1,
        D(2026, 1, 5),
        used_h=6,
        gender="woman",
        user_category="student",
        declared_initiatives=[women.pk],
    )
    use(
        s3,
        w.laser1,
        D(2026, 2, 5),
        used_h=4,
        gender="woman",
        age_band="51+",
        user_category="student",
        initiative=young,
    )
    MemberDay.objects.create(
        subject=s1,
        lab=w.alpha,
        day=D(2026, 2, 9),
        kind="workshop",
        initiative=young,
        used_h=2,
        gender="woman",
    )
    return w


@pytest.fixture
def declared_cells(declared):
    """The year's raw cells of :func:`declared`."""
    return year_cells(2026, declared.scope, today=TODAY)


def test_gender_and_age_band_use_each_makers_latest_answer(declared_cells):
    at = {"lab": "alpha", "dimension": "gender"}
    makers = {
        c.category: c.value
        for c in declared_cells
        if c.period == "2026-Q1" and c.metric == "makers" and c.key[1:5] == ("alpha", "", "", "gender")
    }
    assert makers == {"woman": 1, "man": 1, "another": 0, "": 1}
    assert sum(makers.values()) == value(declared_cells, "2026-Q1", "active_makers", lab="alpha")
    assert value(declared_cells, "2026-Q1", "declared_coverage", category="", **at) == pytest.approx(66.7)
    assert find(declared_cells, "2026-Q1", "declared_coverage", category="", **at).people == 3
    ages = {"lab": "alpha", "dimension": "age_band"}
    assert value(declared_cells, "2026-Q1", "makers", category="51+", **ages) == 1
    assert value(declared_cells, "2026-Q1", "makers", category="", **ages) == 2
    # The network per month: in February s1 had declared.
    assert value(declared_cells, "2026-02", "makers", dimension="gender", category="woman") == 2
    assert value(declared_cells, "2026-01", "makers", dimension="gender", category="woman") == 1
    assert value(declared_cells, "2026-03", "makers", dimension="gender", category="") == 1


def test_demographics_appear_only_on_their_grid(declared_cells):
    seen = {
        (c.dimension, c.level, grain(c.period))
        for c in declared_cells
        if c.dimension in ("gender", "age_band", "user_category", "initiative")
    }
    assert seen == {
        ("gender", "lab", "quarter"),
        ("gender", "network", "month"),
        ("age_band", "lab", "quarter"),
        ("age_band", "network", "month"),
        ("user_category", "lab", "quarter"),
        ("user_category", "lab", "year"),
        ("initiative", "lab", "quarter"),
        ("initiative", "lab", "year"),
    }
    assert not [c for c in declared_cells if c.dimension == "gender" and c.period == "2026-02" and c.lab]


def test_user_category_makers_hours_and_shares(declared_cells):
    at = {"lab": "alpha", "dimension": "user_category"}
    # s1's latest row has no category: not declared; s3 is the one student.
    assert value(declared_cells, "2026-Q1", "makers", category="student", **at) == 1
    assert value(declared_cells, "2026-Q1", "category_hours", category="student", **at) == 10.0
    assert find(declared_cells, "2026-Q1", "category_hours", category="student", **at).shares == (1.0,)
    assert value(declared_cells, "2026-Q1", "category_hours", category="", **at) == 5.0
    assert value(declared_cells, "2026", "makers", category="company", **at) == 1
    hours = find(declared_cells, "2026-Q1", "category_hours", category="company", **at)
    assert (hours.value, hours.people, hours.unit) == (1.0, 1, "h")
    assert value(declared_cells, "2026-Q2", "makers", category="student", **at) == 0
    assert table_of(hours) == "user_category"


def test_initiative_reach(declared_cells):
    young = {"lab": "alpha", "dimension": "initiative", "category": "young-makers"}
    assert value(declared_cells, "2026-Q1", "participants", **young) == 2  # s1's workshop, s3's booking
    hours = find(declared_cells, "2026-Q1", "category_hours", **young)
    assert hours.value == 6.0 and hours.shares == pytest.approx((4 / 6, 2 / 6))
    assert value(declared_cells, "2026-Q1", "declared_participants", **young) == 1  # s2
    # s3 declared "women in tech" in January only; their latest answer of the quarter no longer has it,
    # and nobody took part in it: no table for it.
    assert not [c for c in declared_cells if c.category == "women-in-tech"]
    assert value(declared_cells, "2026", "participants", **young) == 2
    assert table_of(hours) == "initiatives"


# --- flags, tables, cost ------------------------------------------------------------------------------------


def test_the_running_periods_are_provisional(machine_days):
    cells = year_cells(2026, machine_days.scope, today=D(2026, 2, 15))
    provisional = {c.period for c in cells if c.obs_status == PROVISIONAL}
    assert provisional == {"2026", "2026-Q1", "2026-02"}
    assert {c.obs_status for c in cells if c.period == "2026-03"} == {""}
    assert {c.obs_status for c in year_cells(2026, machine_days.scope, today=TODAY)} == {""}


def test_every_cell_has_a_table_and_its_definitions_unit(declared):
    from fablab.reports.definitions import METRICS

    cells = year_cells(2026, declared.scope, today=TODAY)
    assert {table_of(c) for c in cells} <= set(TABLES)
    for c in cells:
        assert c.unit == METRICS[c.metric].unit
        assert c.level in METRICS[c.metric].levels
    assert len({c.key for c in cells}) == len(cells)
    assert [c for c in cells if METRICS[c.metric].kind.startswith("people")]
    assert all(c.people is not None for c in cells if METRICS[c.metric].kind.startswith("people"))


def test_queries_do_not_grow_with_the_rows(declared):
    w = declared
    year_cells(2026, w.scope, today=TODAY)  # warm up the content types and the like
    with CaptureQueriesContext(connection) as few:
        year_cells(2026, w.scope, today=TODAY)
    more = subjects(30)
    for i, s in enumerate(more):
        use(s, w.laser1 if i % 2 else w.laser2, D(2026, 1 + i % 12, 1 + i % 28), used_h=i)
        MachineDay.objects.create(
            machine=w.laser2, day=D(2026, 1 + i % 12, 1 + i % 28), open_h=8, used_h=i % 8
        )
    with CaptureQueriesContext(connection) as many:
        year_cells(2026, w.scope, today=TODAY)
    assert len(many) == len(few) <= 20


def test_no_labs_no_cells():
    assert year_cells(2026, [], today=TODAY) == []
