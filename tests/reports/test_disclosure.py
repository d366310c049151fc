"""Disclosure control, rule by rule, on hand-built cells (no database)."""

from __future__ import annotations

import pytest

from fablab.reports.cells import Cell
from fablab.reports.definitions import METRICS
from fablab.reports.disclosure import (
    BAND_UNIT,
    DOMINANCE_RULE,
    GRID_RULE,
    MACHINE_RULE,
    OPEN_DATA_RULE,
    PATTERN_RULE,
    SECONDARY_RULE,
    SUPPRESSION_NOTES,
    THRESHOLD_RULE,
    protect,
    protect_with_reasons,
    summary,
)


def cell(metric, value, period="2026", lab="", machine_type="", machine="", dimension="", category="", **kw):
    return Cell(
        period=period,
        lab=lab,
        machine_type=machine_type,
        machine=machine,
        dimension=dimension,
        category=category,
        metric=metric,
        value=value,
        unit=kw.pop("unit", METRICS[metric].unit if metric in METRICS else ""),
        **kw,
    )


def by_key(cells):
    return {c.key: c for c in cells}


def hidden(cells):
    return {c.key for c in cells if c.suppressed}


# --- rule 3: threshold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("people", "suppressed"), [(0, False), (1, True), (9, True), (10, False)])
def test_threshold_boundary(people, suppressed):
    [out] = protect([cell("active_makers", people, lab="a", people=people)])
    assert out.suppressed is suppressed
    assert out.value == people  # kept inside the cell
    assert (out.public()["value"] is None) is suppressed


def test_percentages_and_medians_rest_on_their_denominators_people():
    out = protect(
        [
            cell("median_hours_per_maker", 3.5, lab="a", people=9),
            cell("median_hours_per_maker", 3.5, lab="b", people=10),
        ]
    )
    assert [c.suppressed for c in out] == [True, False]


# --- rule 4: dominance -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shares", "suppressed"),
    [
        ((0.5, 0.17, 0.1), False),
        ((0.51, 0.1), True),
        ((0.4, 0.27, 0.1), False),
        ((0.4, 0.28, 0.1), True),
    ],
)
def test_dominance(shares, suppressed):
    cells = [
        cell("category_hours", 100.0, lab="a", dimension="user_category", category=cat, people=12, shares=s)
        for cat, s in (("student", shares), ("individual", (0.1,) * 10), ("company", (0.1,) * 10))
    ]
    out, reasons = protect_with_reasons(cells)
    assert out[0].suppressed is suppressed
    if suppressed:
        assert reasons[out[0].key] == DOMINANCE_RULE


# --- rule 5: machine cells -----------------------------------------------------------------------------


def machine_cells(users, used=30.0, net=100.0, **kw):
    where = dict(lab="a", machine_type="laser", machine="l1", **kw)
    return [
        cell("net_available_hours", net, **where),
        cell("availability", 97.0, **where),
        cell("used_hours", used, users=users, **where),
        cell("usage_utilisation", 100 * used / net, users=users, **where),
        cell("booked_hours", 60.0, users=users, **where),
        cell("booking_utilisation", 60.0, users=users, **where),
        cell("energy", 12.0, users=users, **where),
    ]


@pytest.mark.parametrize("users", [0, 3])
def test_machine_with_no_or_three_users_is_shown(users):
    out = protect(machine_cells(users))
    assert not hidden(out)
    assert all(c.unit != BAND_UNIT for c in out)


@pytest.mark.parametrize("users", [1, 2])
def test_machine_with_one_or_two_users_bands_utilisation_and_hides_the_rest(users):
    out = by_key(protect(machine_cells(users, used=30.0)))
    k = ("2026", "a", "laser", "l1", "", "")
    assert out[(*k, "usage_utilisation")].value == 25.0
    assert out[(*k, "usage_utilisation")].unit == BAND_UNIT
    assert not out[(*k, "usage_utilisation")].suppressed
    assert out[(*k, "booking_utilisation")].value == 50.0
    for metric in ("used_hours", "booked_hours", "energy"):
        assert out[(*k, metric)].suppressed
    for metric in ("net_available_hours", "availability"):  # equipment: always shown
        assert not out[(*k, metric)].suppressed


def test_full_utilisation_is_the_top_band():
    out = by_key(protect(machine_cells(1, used=100.0)))
    assert out[("2026", "a", "laser", "l1", "", "", "usage_utilisation")].value == 75.0


def test_a_band_narrower_than_an_hour_is_suppressed_instead():
    out = by_key(protect(machine_cells(1, used=1.0, net=3.0)))
    assert out[("2026", "a", "laser", "l1", "", "", "usage_utilisation")].suppressed


def test_type_level_figures_of_one_or_two_users_are_protected_too():
    out, reasons = protect_with_reasons(
        [
            cell("no_shows", 2, lab="a", machine_type="laser", users=1),
            cell("no_show_rate", 50.0, lab="a", machine_type="laser", users=1),
            cell("bookings_kept", 4, lab="a", machine_type="laser", users=1),
        ]
    )
    assert all(c.suppressed for c in out)
    assert reasons[out[0].key] == MACHINE_RULE


# --- rule 6: secondary suppression -------------------------------------------------------------------


def test_spatial_machine_hidden_alone_in_its_type_hides_the_next_smallest_machine():
    cells = [
        cell("used_hours", 40.0, lab="a", machine_type="laser", users=5),
        cell("used_hours", 5.0, lab="a", machine_type="laser", machine="l1", users=1),
        cell("used_hours", 0.0, lab="a", machine_type="laser", machine="l2", users=0),
        cell("used_hours", 15.0, lab="a", machine_type="laser", machine="l3", users=3),
        cell("used_hours", 20.0, lab="a", machine_type="laser", machine="l4", users=3),
    ]
    out, reasons = protect_with_reasons(cells)
    keys = hidden(out)
    assert {k[3] for k in keys} == {"l1", "l3"}  # not the zero: it would pin l1 down elsewhere
    assert reasons[out[3].key] == SECONDARY_RULE


def test_spatial_single_machine_type_hides_the_type_total():
    cells = [
        cell("used_hours", 5.0, lab="a", machine_type="cnc", users=1),
        cell("used_hours", 5.0, lab="a", machine_type="cnc", machine="c1", users=1),
        cell("used_hours", 50.0, lab="a", machine_type="laser", users=9),
        cell("used_hours", 30.0, lab="a", users=10),
    ]
    out = by_key(protect(cells))
    assert out[("2026", "a", "cnc", "", "", "", "used_hours")].suppressed
    # the lab total minus the laser would give the cnc type: the laser goes too (or the lab)
    assert out[("2026", "a", "laser", "", "", "", "used_hours")].suppressed


def test_spatial_labs_to_network_hide_the_network_not_another_lab():
    cells = [
        cell("used_hours", 100.0, users=20),
        cell("used_hours", 5.0, lab="a", users=1),
        cell("used_hours", 95.0, lab="b", users=19),
    ]
    out = by_key(protect(cells))
    assert out[("2026", "", "", "", "", "", "used_hours")].suppressed
    assert not out[("2026", "b", "", "", "", "", "used_hours")].suppressed


def test_two_hidden_labs_hide_the_network_too():
    # their sum beside a shown network total could be split again by the labs' other periods
    cells = [
        cell("used_hours", 7.5, period="2026-Q3", users=3),
        cell("used_hours", 7.0, period="2026-Q3", lab="a", users=2),
        cell("used_hours", 0.5, period="2026-Q3", lab="b", users=1),
    ]
    out = by_key(protect(cells))
    assert out[("2026-Q3", "", "", "", "", "", "used_hours")].suppressed


def test_temporal_month_hidden_alone_in_its_quarter():
    where = dict(lab="a", machine_type="laser", machine="l1", metric="used_hours")
    cells = [
        cell(value=30.0, period="2026-Q1", users=5, **where),
        cell(value=4.0, period="2026-01", users=1, **where),
        cell(value=16.0, period="2026-02", users=3, **where),
        cell(value=10.0, period="2026-03", users=3, **where),
    ]
    out = by_key(protect(cells))
    assert out[("2026-01", "a", "laser", "l1", "", "", "used_hours")].suppressed
    assert out[("2026-03", "a", "laser", "l1", "", "", "used_hours")].suppressed
    assert not out[("2026-02", "a", "laser", "l1", "", "", "used_hours")].suppressed


def test_categorical_prefers_not_declared_and_keeps_the_pattern_across_quarters():
    cells = []
    for q, woman in ((1, 4), (2, 12), (3, 15), (4, 11)):
        period = f"2026-Q{q}"
        values = {"woman": woman, "man": 30, "another": 0, "": 11}
        cells.append(
            cell("active_makers", sum(values.values()), period=period, lab="a", people=sum(values.values()))
        )
        for cat, n in values.items():
            cells.append(
                cell("makers", n, period=period, lab="a", dimension="gender", category=cat, people=n)
            )
        cells.append(
            cell(
                "declared_coverage",
                80.0,
                period=period,
                lab="a",
                dimension="gender",
                people=sum(values.values()),
            )
        )
    out, reasons = protect_with_reasons(cells)
    gone = {(k[0], k[5], k[6]) for k in hidden(out)}
    for q in range(1, 5):
        p = f"2026-Q{q}"
        assert (p, "woman", "makers") in gone  # hidden in Q1, so in every quarter
        assert (p, "", "makers") in gone  # merged into "not declared", not the man category
        assert (p, "", "declared_coverage") in gone  # it gives "not declared" away
        assert (p, "man", "makers") not in gone
    assert reasons[("2026-Q2", "a", "", "", "gender", "woman", "makers")] == PATTERN_RULE
    assert reasons[("2026-Q1", "a", "", "", "gender", "woman", "makers")] == THRESHOLD_RULE


def test_partners_are_suppressed_together():
    where = dict(lab="a", machine_type="laser")
    cells = [
        cell("used_hours", 40.0, users=4, **where),
        cell("busy_hours", 30.0, users=4, **where),
        cell("busy_share", 75.0, users=4, **where),
        cell("returning_makers", 4, lab="a", period="2026-Q2", people=4),
        cell("returning_rate", 20.0, lab="a", period="2026-Q2", people=20),
        cell("active_makers", 20, lab="a", period="2026-Q1", people=20),
    ]
    # the used hours hidden as a secondary elsewhere: the busy share would give them away
    cells[0] = cells[0].replace(obs_status="c")
    out = by_key(protect(cells))
    assert out[("2026", "a", "laser", "", "", "", "busy_share")].suppressed
    assert not out[("2026", "a", "laser", "", "", "", "busy_hours")].suppressed
    assert out[("2026-Q2", "a", "", "", "", "", "returning_rate")].suppressed


# --- rule 7 ------------------------------------------------------------------------------------------


def test_demographics_off_their_grid_are_dropped():
    cells = [
        cell("makers", 20, period="2026-03", lab="a", dimension="gender", category="man", people=20),
        cell("makers", 20, period="2026-Q1", lab="a", dimension="gender", category="man", people=20),
        cell("makers", 20, period="2026-03", dimension="gender", category="man", people=20),
    ]
    out, reasons = protect_with_reasons(cells)
    assert [c.period for c in out] == ["2026-Q1", "2026-03"]
    assert reasons[cells[0].key] == GRID_RULE


# --- rule 9 ------------------------------------------------------------------------------------------


def test_open_data_keeps_year_tables_rounds_counts_and_recomputes_count_percentages():
    cells = [
        cell("bookings_kept", 123, lab="a", users=40),
        cell("no_shows", 12, lab="a", users=40),
        cell("no_show_rate", 9.8, lab="a", users=40),
        cell("bookings_kept", 40, lab="b", users=12),
        cell("no_shows", 3, lab="b", users=12),
        cell("no_show_rate", 7.5, lab="b", users=12),
        cell("active_makers", 12, lab="a", people=12),
        cell("active_makers", 12, period="2026-Q1", lab="a", people=12),
        cell("used_hours", 10.0, lab="a", machine_type="laser", users=5),
        cell("used_hours", 7.0, period="2026", dimension="weekday_hour", category="0-10", lab="a"),
    ]
    out, reasons = protect_with_reasons(cells, open_data=True)
    out = by_key(out)
    assert {k[0] for k in out} == {"2026"} and {k[2] for k in out} == {""}
    assert all(k[4] != "weekday_hour" for k in out)
    a = ("2026", "a", "", "", "", "")
    b = ("2026", "b", "", "", "", "")
    assert out[(*a, "bookings_kept")].value == 125
    assert out[(*a, "no_shows")].value == 10
    assert out[(*a, "no_show_rate")].value == 8.0  # 10 / 125
    assert out[(*a, "active_makers")].value == 10
    assert out[(*b, "no_shows")].suppressed and reasons[(*b, "no_shows")] == OPEN_DATA_RULE
    assert out[(*b, "no_show_rate")].suppressed
    assert all(c.value % 5 == 0 for c in out.values() if c.unit == "count" and not c.suppressed)


# --- properties --------------------------------------------------------------------------------------


def test_protect_is_idempotent_and_deterministic():
    cells = [
        *machine_cells(1),
        cell("used_hours", 90.0, lab="a", machine_type="laser", users=6),
        cell("used_hours", 60.0, lab="a", machine_type="laser", machine="l2", users=3),
        cell("active_makers", 4, lab="a", people=4),
    ]
    once = protect(cells)
    assert protect(once) == once
    assert protect(list(cells)) == once
    open_once = protect(cells, open_data=True)
    assert protect(open_once, open_data=True) == open_once


def test_summary_counts_by_rule_and_notes_explain_every_rule():
    cells = [*machine_cells(1), cell("active_makers", 4, lab="a", people=4)]
    out, reasons = protect_with_reasons(cells)
    counts = summary(out, reasons)
    assert counts == summary(out)
    assert counts[THRESHOLD_RULE] == 1 and counts["band"] == 2 and counts[MACHINE_RULE] == 3
    assert set(counts) <= set(SUPPRESSION_NOTES)
    assert all(str(text) for text in SUPPRESSION_NOTES.values())
