"""The disclosure control against an attacker: every suppressed figure stays a wide range.

A hypothesis test builds random small populations (labs, machine types, machines, members with
self-declared categories, hours per member, machine and month), computes the raw cells of a year the way
the metrics do, protects them, and then attacks each suppressed cell with a linear programme (scipy's
HiGHS): the unknowns are the underlying values (hours per machine and month, hours per lab, user category
and month, each published count of people), the constraints everything an officer can download — every
shown figure, the sums that tie machines to types, labs and the network, months to quarters and the
year, categories to their table total, percentages times their published denominators, utilisation
bands, non-negativity. A suppressed cell is *recovered* when its smallest and largest possible values
lie less than half an hour (or half a person) apart. None may be.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.optimize import linprog

from fablab.reports import disclosure, disclosure_audit
from fablab.reports.cells import Cell, Period
from fablab.reports.disclosure import BAND, BAND_UNIT, protect

GENDERS = ("woman", "man", "another", "")
CATEGORIES = ("individual", "student", "")
YEAR = 2026
PERIODS = Period.of_year(YEAR)


def months_of(period: Period) -> list[int]:
    first = period.first_day.month
    return list(range(first, period.end_day.month if period.end_day.year == YEAR else 13))


@dataclass
class Population:
    machines: list[tuple[str, str, str]]  # (lab, type, machine)
    members: list[tuple[str, str]]  # (gender, user category), fixed for the year
    net: dict[str, float]  # net available hours of a machine in any month
    hours: dict[tuple[int, str, int], float]  # (member, machine, month) -> used hours

    @property
    def labs(self) -> list[str]:
        return sorted({lab for lab, _, _ in self.machines})


@st.composite
def populations(draw) -> Population:
    machines = []
    for lab in ("a", "b")[: draw(st.integers(1, 2))]:
        for machine_type in ("laser", "cnc")[: draw(st.integers(1, 2))]:
            for n in range(draw(st.integers(1, 3))):
                machines.append((lab, machine_type, f"{lab}-{machine_type}-{n}"))
    members = draw(
        st.lists(st.tuples(st.sampled_from(GENDERS), st.sampled_from(CATEGORIES)), min_size=2, max_size=30)
    )
    net = {m: float(draw(st.integers(20, 200))) for _, _, m in machines}
    hours: dict = {}
    activity = st.tuples(
        st.integers(0, len(members) - 1),
        st.sampled_from([m for _, _, m in machines]),
        st.integers(1, 12),
        st.integers(1, 30),
    )
    used: dict = defaultdict(float)  # a machine is used at most its available hours in a month
    for member, machine, month, half_hours in draw(st.lists(activity, max_size=90)):
        key = (member, machine, month)
        more = min(half_hours / 2, net[machine] - used[(machine, month)])
        if more > 0:
            hours[key] = hours.get(key, 0) + more
            used[(machine, month)] += more
    return Population(machines, members, net, hours)


# --- the raw cells, as the metrics compute them ---------------------------------------------------------


def raw_cells(pop: Population) -> list[Cell]:
    cells = []
    nodes = [("", "", "")]
    nodes += [(lab, "", "") for lab in pop.labs]
    nodes += sorted({(lab, t, "") for lab, t, _ in pop.machines})
    nodes += list(pop.machines)

    def inside(node, machine):
        lab, machine_type, name = next(m for m in pop.machines if m[2] == machine)
        return all(want in ("", have) for want, have in zip(node, (lab, machine_type, name), strict=True))

    for period in PERIODS:
        months = months_of(period)
        for node in nodes:
            machines = [m for _, _, m in pop.machines if inside(node, m)]
            rows = {k: h for k, h in pop.hours.items() if k[1] in machines and k[2] in months}
            used = round(sum(rows.values()), 1)
            net = sum(pop.net[m] for m in machines) * len(months)
            users = len({k[0] for k in rows})
            where = dict(period=str(period), lab=node[0], machine_type=node[1], machine=node[2])
            cells += [
                Cell(metric="net_available_hours", value=net, unit="h", **where),
                Cell(metric="used_hours", value=used, unit="h", users=users, **where),
                Cell(
                    metric="usage_utilisation",
                    value=round(100 * used / net, 1) if net else None,
                    unit="%",
                    users=users,
                    **where,
                ),
            ]
        for lab in ["", *pop.labs]:
            rows = {
                k: h for k, h in pop.hours.items() if k[2] in months and (not lab or k[1].startswith(lab))
            }
            active = sorted({k[0] for k in rows})
            where = dict(period=str(period), lab=lab)
            cells.append(
                Cell(metric="active_makers", value=len(active), unit="count", people=len(active), **where)
            )
            if (lab and period.grain == "quarter") or (not lab and period.grain == "month"):
                cells += demographic(where, "gender", GENDERS, [pop.members[i][0] for i in active])
            if lab and period.grain in ("quarter", "year"):
                cats = [pop.members[i][1] for i in active]
                cells += demographic(where, "user_category", CATEGORIES, cats, coverage=False)
                for cat in CATEGORIES:
                    per_member = defaultdict(float)
                    for (member, _, _), h in rows.items():
                        if pop.members[member][1] == cat:
                            per_member[member] += h
                    total = sum(per_member.values())
                    shares = (
                        tuple(sorted((h / total for h in per_member.values()), reverse=True)) if total else ()
                    )
                    cells.append(
                        Cell(
                            metric="category_hours",
                            dimension="user_category",
                            category=cat,
                            value=round(total, 1),
                            unit="h",
                            people=len(per_member),
                            shares=shares,
                            **where,
                        )
                    )
    return cells


def demographic(where, dimension, categories, answers, coverage=True) -> list[Cell]:
    cells = [
        Cell(
            metric="makers",
            dimension=dimension,
            category=cat,
            value=answers.count(cat),
            unit="count",
            people=answers.count(cat),
            **where,
        )
        for cat in categories
    ]
    if coverage:
        declared = sum(1 for a in answers if a)
        cells.append(
            Cell(
                metric="declared_coverage",
                dimension=dimension,
                value=round(100 * declared / len(answers), 1) if answers else None,
                unit="%",
                people=len(answers),
                **where,
            )
        )
    return cells


# --- the attack -----------------------------------------------------------------------------------------


class Attack:
    """A linear programme over the unknowns behind the published cells."""

    def __init__(self, pop: Population, published: list[Cell]):
        self.pop = pop
        self.index: dict = {}
        self.eq: list[tuple[dict, float]] = []
        self.le: list[tuple[dict, float]] = []
        for _, _, machine in pop.machines:
            for month in range(1, 13):
                self.var(("x", machine, month))
        for lab in pop.labs:  # every member hour is some user category's
            for month in range(1, 13):
                row = {self.var(("y", lab, cat, month)): 1.0 for cat in CATEGORIES}
                for _, _, machine in (m for m in pop.machines if m[0] == lab):
                    row[self.var(("x", machine, month))] = -1.0
                self.eq.append((row, 0.0))
        tables = defaultdict(dict)
        for cell in published:
            if cell.metric in ("makers", "active_makers"):
                tables[(cell.period, cell.lab, cell.dimension)][cell.category] = self.var(cell.key)
        for (period, lab, dimension), members in tables.items():
            if dimension:  # the categories of a breakdown add up to the active makers
                total = tables[(period, lab, "")][""]
                row = {v: 1.0 for v in members.values()}
                row[total] = -1.0
                self.eq.append((row, 0.0))
        self.by_key = {cell.key: cell for cell in published}
        for cell in published:
            if not cell.suppressed and cell.value is not None:
                self.publish(cell)

    def var(self, name) -> int:
        return self.index.setdefault(name, len(self.index))

    def expression(self, cell: Cell) -> dict[int, float] | None:
        """The cell's value (hours for a utilisation) as a linear expression of the unknowns."""
        months = months_of(Period.parse(cell.period))
        if cell.metric in ("used_hours", "usage_utilisation"):
            machines = [
                m
                for lab, t, m in self.pop.machines
                if cell.lab in ("", lab) and cell.machine_type in ("", t) and cell.machine in ("", m)
            ]
            return {self.var(("x", m, month)): 1.0 for m in machines for month in months}
        if cell.metric == "category_hours":
            return {self.var(("y", cell.lab, cell.category, month)): 1.0 for month in months}
        if cell.metric in ("makers", "active_makers"):
            return {self.var(cell.key): 1.0}
        return None

    def publish(self, cell: Cell) -> None:
        expr = self.expression(cell)
        if cell.metric == "usage_utilisation":
            net = self.by_key[(*cell.key[:6], "net_available_hours")].value
            low, high = (
                (cell.value, cell.value + BAND)
                if cell.unit == BAND_UNIT
                else (cell.value - 0.05, cell.value + 0.05)
            )
            self.le.append((expr, high * net / 100))
            self.le.append(({v: -c for v, c in expr.items()}, -low * net / 100))
        elif cell.metric == "declared_coverage":
            makers = self.var((*cell.key[:6], "makers"))
            active = self.var((cell.period, cell.lab, "", "", "", "", "active_makers"))
            share = 1 - cell.value / 100
            self.le.append(({makers: 1.0, active: -(share + 0.0005)}, 0.0))
            self.le.append(({makers: -1.0, active: share - 0.0005}, 0.0))
        elif expr is not None:
            self.eq.append((expr, float(cell.value)))

    def solve(self):
        """Freeze the constraints into sparse matrices (once per attack)."""
        n = len(self.index)

        def matrix(rows):
            if not rows:
                return None, None
            data, ii, jj = [], [], []
            for i, (row, _) in enumerate(rows):
                for v, c in row.items():
                    data.append(c)
                    ii.append(i)
                    jj.append(v)
            return sparse.csr_array((data, (ii, jj)), shape=(len(rows), n)), np.array([b for _, b in rows])

        self.a_eq, self.b_eq = matrix(self.eq)
        self.a_le, self.b_le = matrix(self.le)

    def bounds_of(self, cell: Cell) -> tuple[float, float] | None:
        """The smallest and largest value the cell can take given everything published."""
        expr = self.expression(cell)
        if expr is None:
            return None
        objective = np.zeros(self.a_eq.shape[1])
        for v, c in expr.items():
            objective[v] += c
        ends = []
        for sign in (1, -1):
            result = linprog(
                sign * objective,
                A_ub=self.a_le,
                b_ub=self.b_le,
                A_eq=self.a_eq,
                b_eq=self.b_eq,
                method="highs",
            )
            assert result.status in (0, 3), result.message  # the published figures are consistent
            ends.append(sign * result.fun if result.status == 0 else np.inf)
        return ends[0], ends[1]


def recovered(pop: Population, published: list[Cell]) -> list[tuple[Cell, float, float]]:
    attack = Attack(pop, published)
    for cell in published:  # every unknown exists before the matrices are frozen
        if cell.suppressed:
            attack.expression(cell)
    attack.solve()
    found, seen = [], {}
    for cell in published:
        if not cell.suppressed:
            continue
        expr = attack.expression(cell)
        if expr is None:
            continue
        same = tuple(sorted(expr.items()))  # a utilisation rests on the same hours as its used hours
        if same not in seen:
            seen[same] = attack.bounds_of(cell)
        low, high = seen[same]
        if high - low < 0.5:
            found.append((cell, low, high))
    return found


def primary_only(cells: list[Cell]) -> list[Cell]:
    """Rules 3–5 without secondary suppression: what the attack must beat."""
    protector = disclosure._Protector(cells)
    protector.primary()
    return protector.cells(cells)


# --- the tests ----------------------------------------------------------------------------------------


def small_lab() -> Population:
    """One lab, two lasers: one used by a single member, the other by twelve."""
    hours = {(0, "a-laser-0", 3): 2.5}
    hours.update({(i, "a-laser-1", 3): 4.0 for i in range(1, 13)})
    members = [("woman", "student")] + [("man", "individual")] * 12
    machines = [("a", "laser", "a-laser-0"), ("a", "laser", "a-laser-1")]
    return Population(machines, members, {"a-laser-0": 100.0, "a-laser-1": 100.0}, hours)


def test_primary_suppression_alone_is_recoverable():
    pop = small_lab()
    found = recovered(pop, primary_only(raw_cells(pop)))
    assert found, "the attack should solve what primary suppression alone hides"
    # e.g. the single user's hours on the first laser: the type total minus the second laser
    assert any(c.machine == "a-laser-0" and c.metric == "used_hours" for c, _, _ in found)
    assert any(c.dimension == "gender" and c.category == "woman" for c, _, _ in found)


def test_the_protected_small_lab_is_not_recoverable():
    pop = small_lab()
    assert recovered(pop, protect(raw_cells(pop))) == []


def linked_through_zeros() -> Population:
    """Found by the property test: every relation alone keeps two hidden members or hides its total, yet
    without the exact audit a lab's July is pinned down. The lab's year is shown, and the months nobody
    used are shown zeros, so its hidden quarters are tied to one laser's hidden quarters (whose year is
    shown); what remains of the third quarter is exactly July."""
    machines = [
        (lab, t, f"{lab}-{t}-{n}")
        for lab, t in (("a", "laser"), ("a", "cnc"), ("b", "laser"))
        for n in range(3)
    ]
    net = dict(zip([m for _, _, m in machines], (196, 66, 105, 162, 138, 161, 134, 84, 69), strict=True))
    hours = {
        (20, "a-laser-0", 1): 0.5,
        (0, "a-laser-0", 2): 1.5,
        (0, "a-laser-0", 6): 11.5,
        (0, "a-cnc-2", 7): 13.0,
        (16, "a-laser-1", 7): 5.0,
        (4, "a-laser-0", 8): 10.0,
    }
    members = [("woman", "individual")] * 20 + [("woman", "student"), ("woman", "individual")]
    return Population(machines, members, {m: float(h) for m, h in net.items()}, hours)


def test_hidden_cells_linked_through_shown_zeros():
    """Each relation alone is safe here; the audit of the whole hidden pattern hides one figure more."""
    pop = linked_through_zeros()
    assert recovered(pop, protect(raw_cells(pop))) == []


def test_the_audit_finds_what_the_relations_determine_together():
    one = Fraction(1)
    # a + b = 5, b + c = 3, a + c = 4 (each relation alone has two hidden members): all three determined
    assert disclosure_audit.determined(
        [{"a": one, "b": one}, {"b": one, "c": one}, {"a": one, "c": one}]
    ) == {
        "a",
        "b",
        "c",
    }
    # a + b, c + d, a + c, b + d: a 2 x 2 table with shown margins, nothing determined
    table = [{"a": one, "b": one}, {"c": one, "d": one}, {"a": one, "c": one}, {"b": one, "d": one}]
    assert disclosure_audit.determined(table) == set()
    # a − b = 0 and 100·a − 40·b = 0 (a percentage): a = b = 0
    assert disclosure_audit.determined([{"a": one, "b": -one}, {"a": Fraction(100), "b": Fraction(-40)}]) == {
        "a",
        "b",
    }


@settings(max_examples=15, deadline=None)  # random each run: the LP attack is the slow part
@given(populations())
def test_no_suppressed_cell_is_ever_recovered(pop):
    published = protect(raw_cells(pop))
    assert recovered(pop, published) == []
