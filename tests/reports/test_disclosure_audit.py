"""The exact audit's equation of a percentage with its numerator and denominator."""

from __future__ import annotations

import pytest

from fablab.reports import disclosure, disclosure_audit
from fablab.reports.cells import Cell
from fablab.reports.definitions import RATIOS


def machine_cell(metric: str, value: float, unit: str) -> Cell:
    return Cell("2026-Q1", "a", "laser", "a-laser-1", metric=metric, value=value, unit=unit)


@pytest.mark.parametrize(
    ("percentage", "numerator", "shown"),
    [
        ("usage_utilisation", 20.0, 25.0),  # 20 used hours of 80 net available hours
        ("availability", 20.0, 75.0),  # a complement: 20 h of unplanned downtime leave 60 of the 80 h
    ],
)
def test_a_percentages_equation_holds_for_its_true_figures(percentage, numerator, shown):
    """With its numerator and denominator hidden, the audit's row for a percentage is a linear form of
    the two, which their true values must make zero."""
    ratio = RATIOS[percentage]
    cells = [
        machine_cell(ratio.part, numerator, "h"),
        machine_cell(ratio.whole, 80.0, "h"),
        machine_cell(percentage, shown, "%"),
    ]
    protector = disclosure._Protector(cells)
    protector.ratio(cells[2].key, cells[2])
    protector.hidden = {cells[0].key, cells[1].key}

    [(_index, row)] = disclosure_audit.equations(protector, disclosure._ratio_members)

    assert set(row) == protector.hidden
    assert sum(coefficient * protector.value(key) for key, coefficient in row.items()) == 0
