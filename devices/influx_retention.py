"""How long telemetry is kept in InfluxDB 1.x, and its hourly downsampling (issue 12, item 11).

Two retention policies in the telemetry database, both made by the platform:

* ``"raw"`` — every point the hub writes (``telemetry``, ``machine_state``, ``hub``), kept
  ``INFLUX_RAW_RETENTION`` (default ``396d``, about 13 months), and the database's DEFAULT policy:
  the hub writes without naming a policy and the charts query without naming one, so both use it
  without a change;
* ``"hourly"`` — the downsampled series, kept ``INFLUX_HOURLY_RETENTION`` (default ``INF``):
  ``telemetry_1h`` (per machine and hour: ``<field>_mean``, ``<field>_max`` and ``<field>_count``;
  for the fields of :data:`ON_FIELDS` also ``<field>_on_s`` and ``<field>_on_count``, the seconds
  on and the readings above 0) and ``machine_state_1h`` (per machine and hour: ``<state>_s``, the
  seconds spent in each state).

:func:`ensure_retention` creates the policies, or alters their durations when the settings
changed; the hub runs it at start and ``manage.py influx_retention --apply`` on demand. Making
``"raw"`` the default hides whatever the previous default policy (``autogen``) holds from every
query that names no policy, the charts included. So the hub switches only when that policy holds
no point (a new database); otherwise it logs a warning and the operator runs the command, which
switches and copies the previous policy's last ``INFLUX_RAW_RETENTION`` into ``"raw"``
(:func:`copy_into_raw`, one ``SELECT … INTO`` per chunk of time: restartable, points overwrite).

:func:`downsample_pass` is the scheduler's ``downsample`` step: every complete UTC hour since the
last one done is averaged by InfluxDB (``SELECT mean(*), max(*), count(*) … GROUP BY time(1h), *``)
and written back with ``/write?rp=hourly``. A mean of the laser's power is not a share of time
on, so the on-seconds of :data:`ON_FIELDS` are estimated per hour as machine care does from raw
readings (:meth:`~devices.influx.InfluxStore.field_on_seconds`, from counts per minute), and
:func:`hourly_on_seconds` reads them back for the hours whose raw readings expired. The hour a
pass stopped at is kept in InfluxDB itself (``"hourly"."downsample_progress"``), not in Django's
database: the progress describes this server's data, so a restored or replaced InfluxDB (or
another ``INFLUX_DATABASE``) starts over by itself instead of trusting a row that speaks of
another server. Points carry the hour's start as their timestamp, so an hour done twice (two
schedulers, a ``--from`` rerun) is stored once. An hour is complete :data:`SETTLE` after its end
(the hub's batches land by then); points that come later (a spool replayed after a long outage)
stay in ``"raw"`` and reach ``"hourly"`` only through a rerun (``influx_retention --downsample
--from``). Each pass does at most :data:`MAX_HOURS_PER_PASS` hours, so a long stop catches up over
passes, and an empty stretch is skipped in one step. InfluxDB being down costs one log line and
nothing else (the other steps run); it is asked again :data:`RETRY_AFTER` later.

InfluxDB 2.x/3.x (``INFLUX_TOKEN`` set) keep data in buckets whose retention is the bucket's own
and downsample with a task: nothing here applies there; docs/telemetry-retention.md says what to
do instead, and both functions log that once and do nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import re
from collections import defaultdict
from collections.abc import Iterable

from devices.influx import (
    HUB,
    MACHINE_STATE,
    STATE_CODES,
    TELEMETRY,
    InfluxError,
    InfluxStore,
    fields_line,
    on_seconds,
    quote_ident,
    quote_str,
    tag_prefix,
)

log = logging.getLogger(__name__)

RAW = "raw"
HOURLY = "hourly"
TELEMETRY_1H = "telemetry_1h"
MACHINE_STATE_1H = "machine_state_1h"
PROGRESS = "downsample_progress"

HOUR_MS = 3_600_000
#: Most hours one pass downsamples: a scheduler stopped for a week catches up in 28 passes (at 5 s
#: apart, minutes). Six hours of a 200-machine network at one reading a second are about 4 million
#: points, which InfluxDB averages within :data:`PASS_TIMEOUT_S`.
MAX_HOURS_PER_PASS = 6
#: An hour is complete this long after its end: the hub writes in batches of about a second.
SETTLE = dt.timedelta(minutes=10)
#: A state holds until the next ``machine_state`` point, at most this long: bridges repeat their
#: status every 5 minutes (``status_interval_s``), so a longer silence is a bridge gone, not a state.
STATE_HOLD_MS = 15 * 60_000
#: Shard group duration of ``"hourly"`` when it is kept long (a shorter policy keeps InfluxDB's choice:
#: a shard group may not outlast its policy).
HOURLY_SHARDS = "52w"
#: Fields whose on-time (seconds above 0) is kept per hour: machine care counts the laser tube's
#: service interval in it (``devices.care.LASER_FIELD``) for longer than raw telemetry is kept.
ON_FIELDS = ("laser_power_pct",)
#: The buckets an hour's on-time is estimated from (``field_on_seconds``'s own for ranges up to two weeks).
ON_BUCKET_MS = 60_000
#: Lines per write request.
WRITE_CHUNK = 5_000
#: How often the pass tries to create policies that are missing (or to make "raw" the default).
SETUP_RETRY = dt.timedelta(hours=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: After InfluxDB failed to answer, the pass leaves it alone this long: a server that hangs costs
#: the scheduler one timeout a minute, not one every pass.
RETRY_AFTER = dt.timedelta(minutes=1)
#: Timeout of the pass's requests: a server that hangs holds the scheduler this long, no longer.
PASS_TIMEOUT_S = 20.0

_DURATION = re.compile(r"(\d+)(w|d|h|m|s)")
_UNIT_S = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}


# ------------------------------------------------------------------------------------- durations


def parse_duration(text: str) -> int:
    """Seconds of an InfluxQL duration (``396d``, ``13w``, ``9504h0m0s``); 0 for ``INF`` (and ``0s``).

    Raises ValueError for anything else, and for a finite duration under one hour (InfluxDB's minimum).
    """
    value = text.strip()
    if value.upper() == "INF":
        return 0
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text!r} is not a duration such as 396d, 13w, 9504h or INF")
    seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if 0 < seconds < 3_600:
        raise ValueError(f"{text!r}: a retention policy keeps at least 1h (or INF)")
    return seconds


def influxql_duration(seconds: int) -> str:
    """The InfluxQL literal of :func:`parse_duration`'s seconds (``INF`` for 0)."""
    if seconds == 0:
        return "INF"
    return f"{seconds // 3_600}h" if seconds % 3_600 == 0 else f"{seconds}s"


def _show_duration(text: str) -> int:
    """Seconds of a duration as ``SHOW RETENTION POLICIES`` prints it (``9504h0m0s``; ``0s`` = INF)."""
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(text))


# -------------------------------------------------------------------------------------- policies


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    duration_s: int  # 0 = INF
    default: bool


@dataclasses.dataclass
class Outcome:
    """What :func:`ensure_retention` did: statements run, and the policy left default (if not raw)."""

    statements: list[str] = dataclasses.field(default_factory=list)
    held_back: str | None = None  # the previous default policy, kept default because it holds points


def policies(store: InfluxStore) -> dict[str, Policy]:
    """The database's retention policies by name (``SHOW RETENTION POLICIES``)."""
    out: dict[str, Policy] = {}
    for block in store.query(f"SHOW RETENTION POLICIES ON {quote_ident(store.database)}", database=""):
        columns = block.get("columns", [])
        for row in block.get("values", []):
            rec = dict(zip(columns, row, strict=False))
            out[rec["name"]] = Policy(rec["name"], _show_duration(str(rec["duration"])), bool(rec["default"]))
    return out


def _holds_points(store: InfluxStore, policy: str) -> bool:
    return bool(store.query(f"SELECT * FROM {quote_ident(policy)}./.*/ LIMIT 1"))  # noqa: S608 - quoted


def configured_durations() -> tuple[int, int]:
    """``(raw, hourly)`` seconds from ``INFLUX_RAW_RETENTION``/``INFLUX_HOURLY_RETENTION`` (ValueError if bad)."""
    from django.conf import settings

    out = []
    for name in ("INFLUX_RAW_RETENTION", "INFLUX_HOURLY_RETENTION"):
        try:
            out.append(parse_duration(getattr(settings, name)))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return out[0], out[1]


def ensure_retention(
    store: InfluxStore, raw_s: int, hourly_s: int, *, switch_default: bool = False
) -> Outcome:
    """Create or alter ``"raw"`` and ``"hourly"``; make ``"raw"`` the default when that hides nothing.

    Idempotent: a second call with the same durations runs no statement. ``switch_default`` makes
    ``"raw"`` the default even when the previous default policy holds points (then copy them with
    :func:`copy_into_raw`). Creates the database if missing. Raises :class:`InfluxError`.
    """
    outcome = Outcome()
    if store.v2:
        _once(
            "v2-retention", "InfluxDB v2/v3: the bucket's own retention applies (docs/telemetry-retention.md)"
        )
        return outcome
    store.ensure_database()
    db = quote_ident(store.database)
    existing = policies(store)

    def run(statement: str) -> None:
        store.query(statement, database="")
        outcome.statements.append(statement)
        log.info("InfluxDB retention: %s", statement)

    for name, seconds in ((HOURLY, hourly_s), (RAW, raw_s)):
        duration = influxql_duration(seconds)
        if name not in existing:
            # Hourly points are few: a year per shard group, not InfluxDB's week (52 files a year).
            long = seconds == 0 or seconds >= 2 * parse_duration(HOURLY_SHARDS)
            shards = f" SHARD DURATION {HOURLY_SHARDS}" if name == HOURLY and long else ""
            run(
                f"CREATE RETENTION POLICY {quote_ident(name)} ON {db} DURATION {duration} REPLICATION 1{shards}"
            )
        elif existing[name].duration_s != seconds:
            run(f"ALTER RETENTION POLICY {quote_ident(name)} ON {db} DURATION {duration}")
    default = next((p.name for p in existing.values() if p.default), None)
    if default != RAW:
        if default is None or switch_default or not _holds_points(store, default):
            run(f"ALTER RETENTION POLICY {quote_ident(RAW)} ON {db} DEFAULT")
        else:
            outcome.held_back = default
            log.warning(
                "InfluxDB retention: %r stays the default policy because it holds telemetry; run "
                "`manage.py influx_retention --apply` to make %r the default and copy the last %s into it",
                default,
                RAW,
                influxql_duration(raw_s),
            )
    return outcome


def copy_into_raw(
    store: InfluxStore,
    source: str,
    now: dt.datetime,
    raw_s: int,
    *,
    since: dt.datetime | None = None,
    chunk_hours: int = 6,
) -> int:
    """Copy ``source``'s points of the last ``raw_s`` seconds (or since ``since``) into ``"raw"``.

    Returns how many points were written. One ``SELECT * INTO "raw".:MEASUREMENT … GROUP BY *``
    (tags stay tags) per ``chunk_hours``, oldest first, so memory stays bounded; a point copied
    twice is stored once, so an interrupted copy is simply run again. Points older than
    ``"raw"``'s duration would be refused by InfluxDB: not asked for.
    """
    end_ms = _ms(now) + HOUR_MS
    start_ms = 0
    if raw_s:
        start_ms = _floor_hour(_ms(now) - raw_s * 1000) + HOUR_MS
    if since is not None:
        start_ms = max(start_ms, _floor_hour(_ms(since)))
    first = _first_point(store, source, [TELEMETRY, MACHINE_STATE, HUB], start_ms, end_ms)
    start_ms = _floor_hour(first) if first is not None else end_ms
    written = 0
    step = max(1, chunk_hours) * HOUR_MS
    for a in range(start_ms, end_ms, step):
        b = min(a + step, end_ms)
        q = (
            f"SELECT * INTO {quote_ident(RAW)}.:MEASUREMENT FROM {quote_ident(source)}./.*/ "  # noqa: S608
            f"WHERE time >= {a}ms AND time < {b}ms GROUP BY *"
        )
        for block in store.query(q):
            for row in block.get("values", []):
                written += int(row[1])
    return written


# ----------------------------------------------------------------------------------- downsampling


def downsample(
    store: InfluxStore,
    now: dt.datetime,
    *,
    since: dt.datetime | None = None,
    max_hours: int = MAX_HOURS_PER_PASS,
    keep_s: int = 0,
) -> tuple[int, int]:
    """Downsample the complete hours after the progress mark (or from ``since``): ``(points, done until ms)``.

    At most ``max_hours`` hours; none older than ``keep_s`` (``"hourly"``'s duration, 0 = INF:
    InfluxDB would refuse them). Writes the progress mark last, so a pass cut short does its hours
    again. Raises :class:`InfluxError`.
    """
    end_ms = last_complete_hour(now)
    start_ms = _ms(since) if since is not None else progress(store)
    if start_ms is not None:
        start_ms = _floor_hour(start_ms)
    if keep_s:
        start_ms = max(start_ms or 0, _floor_hour(_ms(now) - keep_s * 1000) + HOUR_MS)
    if start_ms is not None and start_ms >= end_ms:
        return 0, start_ms
    first = _first_point(store, RAW, [TELEMETRY, MACHINE_STATE], start_ms or 0, end_ms)
    if first is None:  # nothing new: remember that, so the next pass does not look again
        _write_progress(store, end_ms)
        return 0, end_ms
    a = max(start_ms or 0, _floor_hour(first))
    b = min(end_ms, a + max(1, max_hours) * HOUR_MS)
    lines = telemetry_hours(store, a, b) + state_hours(store, a, b)
    for i in range(0, len(lines), WRITE_CHUNK):
        store.write_lines(lines[i : i + WRITE_CHUNK], rp=HOURLY)
    _write_progress(store, b)
    return len(lines), b


def progress(store: InfluxStore) -> int | None:
    """The end (epoch ms) of the last hour downsampled, or None before the first pass."""
    q = f"SELECT last({quote_ident('until_ms')}) FROM {quote_ident(HOURLY)}.{quote_ident(PROGRESS)}"  # noqa: S608
    for block in store.query(q):
        for row in block.get("values", []):
            if row[1] is not None:
                return int(row[1])
    return None


def _write_progress(store: InfluxStore, until_ms: int) -> None:
    store.write_lines([fields_line(tag_prefix(PROGRESS, {}), {"until_ms": until_ms}, until_ms)], rp=HOURLY)


def telemetry_hours(store: InfluxStore, a: int, b: int) -> list[str]:
    """``telemetry_1h`` lines of the hours in ``[a, b)``: mean, max and count of every field, per series.

    With the on-seconds of :data:`ON_FIELDS` (:func:`on_fields`) in the same points.
    """
    on = on_fields(store, a, b)
    q = (
        f"SELECT mean(*), max(*), count(*) FROM {quote_ident(RAW)}.{quote_ident(TELEMETRY)} "  # noqa: S608
        f"WHERE time >= {a}ms AND time < {b}ms GROUP BY time(1h), * fill(none)"
    )
    lines = []
    for block in store.query(q):
        prefix = tag_prefix(TELEMETRY_1H, block.get("tags") or {})
        columns = block.get("columns", [])
        for row in block.get("values", []):
            fields = {}
            for column, value in zip(columns[1:], row[1:], strict=False):
                if isinstance(value, int | float) and not isinstance(value, bool):
                    func, _, field = column.partition("_")
                    fields[f"{field}_{func}"] = value
            line = fields_line(prefix, fields | on.get((prefix, int(row[0])), {}), int(row[0]))
            if line:
                lines.append(line)
    return lines


def on_fields(store: InfluxStore, a: int, b: int) -> dict[tuple[str, int], dict[str, float]]:
    """``{(telemetry_1h tag prefix, hour ms): {"<field>_on_s": …, "<field>_on_count": …}}`` of ``[a, b)``.

    Each hour of each series as :meth:`~devices.influx.InfluxStore.field_on_seconds` estimates it
    from that hour's readings: counts per minute of all readings and of those above 0 (two
    statements per field and pass), the cadence their median. No link is known here, so its
    interval does not bound the cadence; :func:`hourly_on_seconds` bounds the sum instead. An hour
    with readings but none on gets 0: a redone hour overwrites its fields.
    """
    out: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    for field in ON_FIELDS:
        column = quote_ident(field)
        base = f"FROM {quote_ident(RAW)}.{quote_ident(TELEMETRY)} WHERE time >= {a}ms AND time < {b}ms"
        group = f" GROUP BY time({ON_BUCKET_MS}ms), * fill(none)"
        all_counts = _counts_per_hour(store, f"SELECT count({column}) {base}{group}")
        on_counts = _counts_per_hour(store, f"SELECT count({column}) {base} AND {column} > 0{group}")
        for (prefix, hour), counts in all_counts.items():
            on = on_counts.get((prefix, hour), {})
            seconds = on_seconds(counts, on, hour, hour + HOUR_MS, ON_BUCKET_MS, math.inf)
            out[(prefix, hour)] |= {f"{field}_on_s": seconds, f"{field}_on_count": sum(on.values())}
    return out


def _counts_per_hour(store: InfluxStore, q: str) -> dict[tuple[str, int], dict[int, int]]:
    """``{(telemetry_1h tag prefix, hour ms): {bucket ms: count}}`` of a ``count(…) … GROUP BY time, *``."""
    out: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
    for block in store.query(q):
        prefix = tag_prefix(TELEMETRY_1H, block.get("tags") or {})
        for row in block.get("values", []):
            if isinstance(row[1], int | float) and row[1] > 0:
                out[(prefix, _floor_hour(int(row[0])))][int(row[0])] = int(row[1])
    return out


def hourly_on_seconds(
    store: InfluxStore,
    lab: str,
    machine: str,
    field: str,
    start_ms: int,
    end_ms: int,
    *,
    reading_cap_s: float,
) -> float:
    """Seconds ``field`` was on in the downsampled hours that start in ``[start_ms, end_ms)`` (ms, on the hour).

    The sum of the hours' ``<field>_on_s``, bounded by ``reading_cap_s`` (the link's telemetry
    interval) per reading on: the bound :meth:`~devices.influx.InfluxStore.field_on_seconds` puts
    on each minute's cadence, put here on the sum (the link is not known when the hour is
    downsampled). So it can only count more than a bound per minute would, and only for hours whose
    readings came slower than the link's interval. 0 without an ``"hourly"`` policy
    (nothing was downsampled). Raises :class:`InfluxError`.
    """
    if HOURLY not in policies(store):
        return 0.0
    on_s, on_count = quote_ident(f"{field}_on_s"), quote_ident(f"{field}_on_count")
    q = (
        f"SELECT sum({on_s}), sum({on_count}) FROM {quote_ident(HOURLY)}.{quote_ident(TELEMETRY_1H)} "  # noqa: S608
        f"WHERE {quote_ident('lab')} = {quote_str(lab)} AND {quote_ident('machine')} = {quote_str(machine)} "
        f"AND time >= {start_ms}ms AND time < {end_ms}ms"
    )
    for block in store.query(q):
        for _time, seconds, readings in block.get("values", [])[:1]:
            return min(seconds or 0.0, (readings or 0) * reading_cap_s)
    return 0.0


def state_hours(store: InfluxStore, a: int, b: int) -> list[str]:
    """``machine_state_1h`` lines of the hours in ``[a, b)``: seconds in each state, per series.

    Reads the states from :data:`STATE_HOLD_MS` before ``a`` (the state an hour opens with).
    """
    q = (
        f"SELECT {quote_ident('state')} FROM {quote_ident(RAW)}.{quote_ident(MACHINE_STATE)} "  # noqa: S608
        f"WHERE time >= {a - STATE_HOLD_MS}ms AND time < {b}ms GROUP BY *"
    )
    lines = []
    for block in store.query(q):
        points = [(int(r[0]), r[1]) for r in block.get("values", []) if isinstance(r[1], str)]
        prefix = tag_prefix(MACHINE_STATE_1H, block.get("tags") or {})
        for hour, seconds in sorted(state_seconds(points, a, b).items()):
            # Every known state, 0 included: an hour done again overwrites each of its fields.
            fields = {f"{state}_s": 0.0 for state in STATE_CODES} | {f"{s}_s": v for s, v in seconds.items()}
            lines.append(fields_line(prefix, fields, hour))
    return lines


def state_seconds(points: Iterable[tuple[int, str]], a: int, b: int) -> dict[int, dict[str, float]]:
    """``{hour start ms: {state: seconds}}`` in ``[a, b)`` from ``(ts ms, state)`` points in time order.

    A state lasts until the next point, at most :data:`STATE_HOLD_MS`; hours without any are left out.
    """
    out: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    points = list(points)
    for i, (ts, state) in enumerate(points):
        until = ts + STATE_HOLD_MS
        if i + 1 < len(points):
            until = min(until, points[i + 1][0])
        lo, hi = max(ts, a), min(until, b)
        while lo < hi:
            hour = _floor_hour(lo)
            cut = min(hi, hour + HOUR_MS)
            out[hour][state] += (cut - lo) / 1000
            lo = cut
    return {hour: dict(states) for hour, states in out.items()}


def _first_point(store: InfluxStore, policy: str, measurements: list[str], a: int, b: int) -> int | None:
    """The earliest timestamp in ``[a, b)`` of any of ``measurements`` in ``policy``, or None."""
    first = None
    for measurement in measurements:
        q = (
            f"SELECT * FROM {quote_ident(policy)}.{quote_ident(measurement)} "  # noqa: S608 - quoted
            f"WHERE time >= {a}ms AND time < {b}ms ORDER BY time ASC LIMIT 1"
        )
        for block in store.query(q):
            for row in block.get("values", [])[:1]:
                first = int(row[0]) if first is None else min(first, int(row[0]))
    return first


# ------------------------------------------------------------------------------- scheduler step


class _PassState:
    """What the scheduler's process remembers between passes: the hour done, the last failure."""

    def __init__(self) -> None:
        self.done_until: dict[tuple[str, str], int] = {}
        self.failed_at: dict[tuple[str, str], dt.datetime] = {}
        self.setup_tried: dict[tuple[str, str], dt.datetime] = {}


def _ready(found: dict[str, Policy]) -> bool:
    return HOURLY in found and RAW in found and found[RAW].default


_STATE = _PassState()
_LOGGED: set[str] = set()


def _once(key: str, message: str, *args: object) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info(message, *args)


def downsample_pass(now: dt.datetime, *, store: InfluxStore | None = None) -> int:
    """The scheduler's ``downsample`` step: the hourly points written (0 when InfluxDB cannot be reached).

    Asks InfluxDB nothing while the last complete hour is known to be done. Needs the policies of
    :func:`ensure_retention` with ``"raw"`` the default; missing ones are made here too (at most
    every :data:`SETUP_RETRY`). While ``"raw"`` is not the default the pass logs once and does
    nothing: the hours before a copy into ``"raw"`` would be done from an empty policy, never again.
    """
    from django.conf import settings

    if settings.INFLUX_TOKEN:
        _once(
            "v2-downsample",
            "InfluxDB v2/v3: downsampling is a task in InfluxDB (docs/telemetry-retention.md)",
        )
        return 0
    own = store is None
    if own:
        try:
            store = InfluxStore(
                settings.INFLUX_URL,
                database=settings.INFLUX_DATABASE,
                org=settings.INFLUX_ORG,
                bucket=settings.INFLUX_BUCKET,
                timeout_s=PASS_TIMEOUT_S,
            )
        except ValueError as exc:
            _once("config", "telemetry downsampling off: %s", exc)
            return 0
    key = (store.url, store.database)
    failed_at = _STATE.failed_at.get(key)
    if failed_at is not None and dt.timedelta(0) <= now - failed_at < RETRY_AFTER:
        if own:
            store.close()
        return 0
    try:
        if _STATE.done_until.get(key, -1) >= last_complete_hour(now):
            return 0
        found = policies(store)
        if not _ready(found) and now - _STATE.setup_tried.get(key, EPOCH) >= SETUP_RETRY:
            # The hub makes them at its start; a hub that started before InfluxDB did not.
            _STATE.setup_tried[key] = now
            raw_s, hourly_s = configured_durations()
            ensure_retention(store, raw_s, hourly_s)
            found = policies(store)
        if not _ready(found):
            _once(f"policies {key}", "telemetry downsampling waits for %r to be the default policy", RAW)
            return 0
        written, until = downsample(store, now, keep_s=found[HOURLY].duration_s)
    except InfluxError as exc:
        if failed_at is None:
            log.warning("telemetry downsampling: InfluxDB did not answer, tried again in a minute: %s", exc)
        _STATE.failed_at[key] = now
        return 0
    finally:
        if own:
            store.close()
    if _STATE.failed_at.pop(key, None) is not None:
        log.info("telemetry downsampling: InfluxDB answers again")
    _STATE.done_until[key] = until
    return written


def last_complete_hour(now: dt.datetime) -> int:
    """The end (epoch ms) of the last hour complete at ``now`` (see :data:`SETTLE`)."""
    return _floor_hour(_ms(now - SETTLE))


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _floor_hour(ms: int) -> int:
    return ms - ms % HOUR_MS
