"""The exact audit behind the secondary suppression of :mod:`fablab.reports.disclosure`.

Secondary suppression checks each relation on its own. Relations that share hidden cells can still, taken
together, pin a hidden cell down: a lab's hidden quarters tied to one machine's hidden quarters through
the shown year and the shown zero months, say. The audit takes the equality relations the protector
built (sums of parts to their total, and a percentage with its numerator and denominator when that is
linear: at most one of the percentage and its denominator is unknown), keeps the hidden (and banded)
cells as unknowns and the shown cells as constants, splits the unknowns into connected components and
brings each component's coefficient matrix to reduced row echelon form in exact rational arithmetic
(:class:`fractions.Fraction`). A hidden cell is *determined* when some row of that form has a non-zero
entry in its column only: then a reader can compute it exactly from what is shown.

The exact part needs only the coefficients, never the shown values themselves (but for the
coefficients a percentage lends). When nothing is determined exactly, :func:`narrow` looks for ranges:
it propagates bounds through the exact sums (non-negativity, and the hours a utilisation band allows)
and counts a hidden cell pinned to less than its margin (an hour, a person) as recovered too. Relations
whose figures only nearly add up (members' hours to the lab's used hours) are left out of that, and a
range that ends before it starts is ignored: it comes from rounding, not from what a reader can learn.
Both are deterministic, and a protected year audits the same again.
"""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from math import inf

from .definitions import RATIOS

#: Shown figures are rounded to a tenth.
TOLERANCE = 0.05

#: The percentages of what their numerator leaves of the denominator: availability (the net available
#: hours without the unplanned downtime published beside it) and the declared coverage (whose numerator
#: is the not-declared count).
COMPLEMENTS = frozenset({"declared_coverage", *(name for name, r in RATIOS.items() if r.complement)})


def _fraction(value) -> Fraction:
    """A shown value as an exact fraction (its decimal reading: 12.3 is 123/10)."""
    return Fraction(str(float(value or 0)))


def equations(protector, ratio_members) -> list[tuple[int, dict]]:
    """The equality relations with an unknown member: ``(relation index, {unknown key: coefficient})``.

    ``ratio_members(key, cell)`` gives a percentage's numerator and denominator keys (or ``None``)."""
    unknown = protector.hidden | protector.banded
    by_key = protector.by_key
    out = []
    seen = set()
    for key in sorted(unknown):
        for index in protector.member_of.get(key, ()):
            if index in seen:
                continue
            seen.add(index)
            rel = protector.relations[index]
            row: dict = {}
            if rel.kind == "sum":
                if rel.total is not None and rel.total in unknown:
                    row[rel.total] = Fraction(-1)
                for part in rel.parts:
                    if part in unknown:
                        row[part] = row.get(part, 0) + Fraction(1)
            elif rel.kind == "ratio":
                row = _ratio_row(rel.parts[0], by_key, unknown, ratio_members)
            row = {k: c for k, c in row.items() if c}
            if row:
                out.append((index, row))
    return out


def _ratio_row(pct, by_key, unknown, ratio_members) -> dict:
    """``100·num = pct·den`` (``100·num = (100 − pct)·den`` for the :data:`COMPLEMENTS`) over the
    unknowns, or ``{}`` when it is not linear in them."""
    cell = by_key[pct]
    if cell.value is None and pct not in unknown:
        return {}
    members = ratio_members(pct, cell)
    if members is None:
        return {}
    num, den = members
    if num not in by_key or den is None or den not in by_key:
        return {}
    # 100·num + s·pct·den + t·den = 0
    s, t = (1, -100) if cell.metric in COMPLEMENTS else (-1, 0)
    row: dict = {}
    if num in unknown:
        row[num] = Fraction(100)
    if pct in unknown and den in unknown:
        return {}  # pct·den: not linear, nothing a linear reading gives away
    if den in unknown:
        row[den] = row.get(den, 0) + s * _fraction(cell.value) + t
    elif pct in unknown:
        row[pct] = row.get(pct, 0) + s * _fraction(by_key[den].value)
    return row


def _components(rows: list[tuple[int, dict]]) -> list[list[tuple[int, dict]]]:
    parent: dict = {}

    def find(k):
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for _, row in rows:
        keys = iter(row)
        first = find(next(keys))
        for k in keys:
            other = find(k)
            if other != first:
                parent[other] = first
    groups = defaultdict(list)
    for item in rows:
        groups[find(next(iter(item[1])))].append(item)
    return [groups[g] for g in sorted(groups, key=lambda g: min(min(r) for _, r in groups[g]))]


def determined(rows: list[dict]) -> set:
    """The unknowns a reader can solve for exactly from ``rows`` (linear forms equal to constants):
    incremental reduced row echelon form, each pivot row kept free of every other pivot."""
    pivots: dict = {}  # pivot key -> row (pivot coefficient 1, no other pivot in it)
    holders: dict = defaultdict(set)  # key -> the pivots whose row has it
    count: dict = defaultdict(int)  # key -> the rows it is in: pivot on the rarest (little fill-in)
    for source in rows:
        for k in source:
            count[k] += 1
    for source in sorted(rows, key=lambda r: (len(r), min(r))):
        row = dict(source)
        for key in [k for k in row if k in pivots]:
            factor = row.pop(key)
            for k, c in pivots[key].items():
                if k == key:
                    continue
                value = row.get(k, 0) - factor * c
                if value:
                    row[k] = value
                else:
                    row.pop(k, None)
        if not row:
            continue
        pivot = min(row, key=lambda k: (count[k], len(holders.get(k, ())), k))
        scale = row[pivot]
        if scale != 1:
            row = {k: c / scale for k, c in row.items()}
        # Clear the new pivot from the other rows.
        for other in sorted(holders.pop(pivot, ())):
            other_row = pivots[other]
            factor = other_row.pop(pivot)
            for k, c in row.items():
                if k == pivot:
                    continue
                value = other_row.get(k, 0) - factor * c
                if value:
                    if k not in other_row:
                        holders[k].add(other)
                    other_row[k] = value
                else:
                    other_row.pop(k, None)
                    holders[k].discard(other)
        pivots[pivot] = row
        for k in row:
            if k != pivot:
                holders[k].add(pivot)
    return {key for key, row in pivots.items() if len(row) == 1}


def narrow(protector, ratio_members, band: float, sweeps: int = 12) -> list[tuple]:
    """Hidden cells that the sums pin down to less than their margin, given non-negativity and the
    bands (a banded utilisation bounds its hours: the band times the shown available hours)."""
    hidden, by_key = protector.hidden, protector.by_key
    low: dict = defaultdict(float)
    high: dict = defaultdict(lambda: inf)
    for key in sorted(protector.banded):
        members = ratio_members(key, by_key[key])
        if not members or members[0] not in hidden or members[1] not in by_key or members[1] in hidden:
            continue
        cell = by_key[key]
        lower = cell.value if cell.unit.endswith("band") else min(100 - band, (cell.value // band) * band)
        den = float(by_key[members[1]].value or 0)
        num = members[0]
        low[num] = max(low[num], lower * den / 100)
        high[num] = min(high[num], (lower + band) * den / 100)
    sums = sorted(
        {
            index
            for key in hidden
            for index in protector.member_of.get(key, ())
            if protector.relations[index].kind == "sum"
            and protector.relations[index].total is not None
            and protector.relations[index].exact
        }
    )

    def bounds(key):
        if key in hidden:
            return low[key], high[key]
        value = protector.value(key)
        return value, value

    for _ in range(sweeps):
        changed = False
        for index in sums:
            rel = protector.relations[index]
            signed = [(rel.total, -1), *((part, 1) for part in rel.parts)]  # Σ sign·member = 0
            # The range of each sign·member, and of their sum: finite parts and unbounded ends apart.
            ends = [(lo, hi) if s > 0 else (-hi, -lo) for (k, s) in signed for lo, hi in (bounds(k),)]
            sum_low = sum(lo for lo, _ in ends if lo != -inf)
            sum_high = sum(hi for _, hi in ends if hi != inf)
            open_low = sum(1 for lo, _ in ends if lo == -inf)
            open_high = sum(1 for _, hi in ends if hi == inf)
            for (key, sign), (lo, hi) in zip(signed, ends, strict=True):
                if key not in hidden:
                    continue
                # sign·key = −(the others' sum), whose range is the whole sum's without this member's
                rest_low = -inf if open_low - (lo == -inf) else sum_low - (lo if lo != -inf else 0)
                rest_high = inf if open_high - (hi == inf) else sum_high - (hi if hi != inf else 0)
                new_low, new_high = (-rest_high, -rest_low) if sign > 0 else (rest_low, rest_high)
                if new_low > low[key] + 1e-9:
                    low[key], changed = new_low, True
                if new_high < high[key] - 1e-9:
                    high[key], changed = new_high, True
        if not changed:
            break
    # A range that ends below its start comes from figures that only nearly add up (members' hours and
    # the lab's used hours): no reader learns the cell from them.
    return [
        key
        for key in sorted(low.keys() | high.keys())
        if -TOLERANCE <= high[key] - low[key] < protector.margin(key) - 1e-9
    ]


def audit(protector, ratio_members, band: float) -> list[tuple[tuple, list[int]]]:
    """The hidden cells a reader can solve for (exactly, or to within their margin), with the relations
    (indices) of their component."""
    found = []
    for component in _components(equations(protector, ratio_members)):
        solved = determined([row for _, row in component])
        indices = [index for index, _ in component]
        found += [(key, indices) for key in sorted(solved) if key in protector.hidden]
    if not found:
        found = [
            (key, list(protector.member_of.get(key, ()))) for key in narrow(protector, ratio_members, band)
        ]
    return found


def candidates(protector, indices, zeros: bool = False) -> list[tuple]:
    """Shown members of the equality relations ``indices`` that hiding would protect with, best first:
    lab-internal relations first, then as the heuristic orders them (figures worth a margin, "not
    declared" and "another", the smallest); a network total where labs add up to it."""
    best = {}
    for index in indices:
        rel = protector.relations[index]
        if rel.kind not in ("sum", "ratio"):
            continue
        margin = protector.margin(rel.parts[0])
        if rel.prefer_total and rel.total is not None:
            members = [rel.total]
        else:
            members = [*rel.parts, *([rel.total] if rel.total is not None else [])]
        for k in members:
            value = protector.value(k)
            if not protector.hideable(k) or k in protector.banded or not (zeros or value > 0):
                continue
            rank = (rel.rank, value < margin, k not in rel.preferred, k == rel.total, value, k)
            if k not in best or rank < best[k]:
                best[k] = rank
    return sorted(best, key=best.get)
