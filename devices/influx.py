"""The telemetry store: one class over InfluxDB's two wire APIs.

* v1 API — ``POST /write?db=&precision=ms`` and InfluxQL ``/query`` — which
  InfluxDB 1.x, 2.x (DBRP mapping) and 3.x all accept. Plain HTTP requests over
  urllib3's connection pool (influxdb-client's high-level APIs are v2-only, and
  Debian's InfluxDB 1.6 answers 404 to every ``/api/v2``); influxdb-client itself
  (about 0.15 s of imports) is loaded only for v2 writes, so a hub on v1 starts sooner.
* v2 API — ``/api/v2/write`` through influxdb-client's *synchronous* write API,
  for InfluxDB 2.x/3.x/Cloud with a token; chosen when ``INFLUX_TOKEN`` is set
  (org and bucket from ``INFLUX_ORG``/``INFLUX_BUCKET``). Queries still use
  InfluxQL on ``/query`` (Flux is not in InfluxDB 3).

Credentials: v1 servers with ``auth-enabled`` take a user and password, given
as the userinfo of the URL (``INFLUX_URL=http://user:pass@host:8086``, percent-encoded)
or as ``username``/``password``; they are sent as HTTP basic auth on every request
(never in the query string, which servers log) and never appear in error messages.

Writes are synchronous and raise on failure: :class:`InfluxUnavailable` when
the server cannot take the batch now (connection refused, timeout, 5xx, 404
database not found, 401/403 wrong or missing credentials — retry or spool it) and
:class:`InfluxRejected` when it refuses the data itself (400). The caller (the hub)
batches about 5,000 lines or one second, and acknowledges the MQTT messages only
after a write returned. :meth:`InfluxStore.write_isolating` writes a batch the server
refuses half by half, so one bad line costs only itself, never the other machines'
points in the same batch.

Line protocol: measurement ``telemetry`` (fields = the reading's values) and
``machine_state`` (``state`` as a string field, ``code`` numeric), tags
``adapter``, ``lab``, ``machine``, ``machine_type``, timestamp = the message's
``ts`` in milliseconds, so a replayed message overwrites itself. Every number is
written as a float, so a field's type never conflicts. :func:`telemetry_line`
is a fast formatter; ``tests/devices/test_influx.py`` proves with hypothesis
that it is byte-identical to influxdb-client's ``Point.to_line_protocol()``.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import urllib3

if TYPE_CHECKING:
    from influxdb_client import Point
    from influxdb_client.rest import ApiException

log = logging.getLogger(__name__)

TELEMETRY = "telemetry"
MACHINE_STATE = "machine_state"
HUB = "hub"
#: Numeric code of each state in ``machine_state.code`` (charts plot numbers).
STATE_CODES = {"offline": 0.0, "idle": 1.0, "running": 2.0, "paused": 3.0, "error": 4.0}

_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


class InfluxError(Exception):
    """A write or query did not succeed."""


class InfluxUnavailable(InfluxError):
    """The server cannot take the write now (down, timeout, 5xx, unknown database): retry or spool."""


class InfluxRejected(InfluxError):
    """The server refused the data itself (400): retrying the same lines cannot help."""


#: Requests one :meth:`InfluxStore.write_isolating` may spend on bisecting: enough to find a
#: handful of bad lines in a 5,000-line batch (about 26 requests each). Past it, the chunks
#: still refused are given up whole (and kept by the caller), instead of thousands of requests.
MAX_ISOLATING_REQUESTS = 400
#: Below this size a refused chunk is tried line by line rather than halved again.
ISOLATE_ONE_BY_ONE = 4


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without userinfo, user, password)``: ``http://u:p@h:8086`` → ``("http://h:8086", "u", "p")``."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.hostname or ""
    if ":" in netloc:  # an IPv6 address
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    return clean, user, password


# ----------------------------------------------------------------------------- line protocol


def _tag_value(value: str) -> str:
    escaped = value.translate(_ESCAPE_KEY)
    return escaped + " " if escaped.endswith("\\") else escaped


def tag_prefix(measurement: str, tags: Mapping[str, str | None]) -> str:
    """``measurement,k=v,… `` (tags sorted by key; empty or None values left out, like ``Point``)."""
    parts = [measurement.translate(_ESCAPE_MEASUREMENT)]
    for key, value in sorted(tags.items()):
        if value is None:
            continue
        k, v = str(key).translate(_ESCAPE_KEY), _tag_value(str(value))
        if k and v:
            parts.append(f"{k}={v}")
    return ",".join(parts) + " "


def _float(value: float) -> str:
    s = str(value)
    return s[:-2] if s.endswith(".0") else s


def fields_line(prefix: str, fields: Mapping[str, float], ts_ms: int) -> str:
    """One line from a :func:`tag_prefix`, numeric fields (written as floats) and a ms timestamp.

    Non-finite values are left out (as ``Point`` does); returns "" when no field is left.
    """
    out = []
    for key, value in sorted(fields.items()):
        f = float(value)
        if math.isfinite(f):
            out.append(f"{key.translate(_ESCAPE_KEY)}={_float(f)}")
    if not out:
        return ""
    return f"{prefix}{','.join(out)} {int(ts_ms)}"


def telemetry_tags(*, lab: str, machine: str, machine_type: str, adapter: str) -> dict[str, str]:
    return {"lab": lab, "machine": machine, "machine_type": machine_type, "adapter": adapter}


def telemetry_line(tags: Mapping[str, str], values: Mapping[str, float], ts_ms: int) -> str:
    """The ``telemetry`` line of one reading (see :func:`telemetry_point` for the reference)."""
    return fields_line(tag_prefix(TELEMETRY, tags), values, ts_ms)


def telemetry_point(tags: Mapping[str, str], values: Mapping[str, float], ts_ms: int) -> Point:
    """The same reading as an influxdb-client ``Point`` (the reference the fast formatter matches)."""
    from influxdb_client import Point, WritePrecision

    point = Point(TELEMETRY)
    for key, value in tags.items():
        point.tag(key, value)
    for key, value in values.items():
        point.field(key, float(value))
    return point.time(int(ts_ms), WritePrecision.MS)


def state_line(tags: Mapping[str, str], state: str, ts_ms: int) -> str:
    """A ``machine_state`` line: ``state`` as a string field plus its numeric ``code``.

    Byte-identical to :func:`state_point`'s ``to_line_protocol()`` (``tests/devices/test_influx.py``).
    """
    code = _float(STATE_CODES.get(state, -1.0))
    return (
        f'{tag_prefix(MACHINE_STATE, tags)}code={code},state="{state.translate(_ESCAPE_STRING)}" {int(ts_ms)}'
    )


def state_point(tags: Mapping[str, str], state: str, ts_ms: int) -> Point:
    """The same state as an influxdb-client ``Point`` (the reference :func:`state_line` matches)."""
    from influxdb_client import Point, WritePrecision

    point = (
        Point(MACHINE_STATE)
        .field("state", state)
        .field("code", STATE_CODES.get(state, -1.0))
        .time(int(ts_ms), WritePrecision.MS)
    )
    for key, value in tags.items():
        point.tag(key, value)
    return point


# ------------------------------------------------------------------------------------ store


class InfluxStore:
    """Writes line protocol and runs InfluxQL against one InfluxDB server.

    ``token`` set → v2 writes to ``org``/``bucket`` (queries through the v1
    compatibility ``/query`` on ``database``, which defaults to the bucket);
    otherwise v1 writes to ``database``.
    """

    def __init__(
        self,
        url: str,
        *,
        database: str = "",
        token: str = "",
        org: str = "",
        bucket: str = "",
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        url, url_user, url_password = split_credentials(url)
        if username is None and url_user is not None:
            username, password = url_user, url_password
        self.url = url.rstrip("/")  # without credentials: it appears in logs and errors
        self.username = username or None
        self.token = token or ""
        self.v2 = bool(self.token)
        self.org = org
        self.bucket = bucket or database
        self.database = database or bucket
        if self.v2 and not (self.org and self.bucket):
            raise ValueError("INFLUX_TOKEN is set: INFLUX_ORG and INFLUX_BUCKET are needed too")
        if not self.v2 and not self.database:
            raise ValueError("INFLUX_DATABASE must name the database")
        # retries=False: a failed request surfaces at once; the hub decides (spool) instead of blocking.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_s), retries=False, maxsize=4, block=False
        )
        # Explicit header: never credentials in the query string, which servers log.
        self._auth_headers: dict[str, str] = {}
        if self.v2:
            self._auth_headers = {"Authorization": f"Token {self.token}"}
        elif self.username:
            pair = f"{self.username}:{password or ''}".encode()
            self._auth_headers = {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
        self._client = None
        self._write_api = None
        if self.v2:
            from influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            self._client = InfluxDBClient(
                url=self.url, token=self.token, org=org or None, timeout=int(timeout_s * 1000), retries=False
            )
            self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def from_settings(cls) -> InfluxStore:
        from django.conf import settings

        return cls(
            settings.INFLUX_URL,
            database=settings.INFLUX_DATABASE,
            token=settings.INFLUX_TOKEN,
            org=settings.INFLUX_ORG,
            bucket=settings.INFLUX_BUCKET,
        )

    @property
    def api(self) -> str:
        return "v2" if self.v2 else "v1"

    def close(self) -> None:
        self._http.clear()
        if self._client is not None:
            self._client.close()

    def _request(self, method: str, path: str, what: str, *, params: list[tuple[str, str]], **kwargs: Any):
        """One HTTP request to the server; :class:`InfluxError` unless it answered 2xx."""
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            resp = self._http.request(method, url, **kwargs)
        except Exception as exc:  # connection refused, timeouts, resets
            raise InfluxUnavailable(f"InfluxDB {what} on {self.url} failed: {exc}") from None
        if resp.status >= 300:
            raise self._http_error(resp.status, resp.data, what)
        return resp

    # -- writes

    def write_lines(self, lines: Sequence[str], *, rp: str | None = None) -> None:
        """Write line-protocol lines (ms timestamps) in one request; raise :class:`InfluxError` on failure.

        ``rp``: a v1 retention policy (``/write?rp=``); None writes to the database's default one.
        """
        if not lines:
            return
        body = "\n".join(lines)
        if self._write_api is None:
            params = [("db", self.database), ("precision", "ms")]
            if rp:
                params.append(("rp", rp))
            self._request(
                "POST",
                "/write",
                "write",
                params=params,
                body=body.encode("utf-8"),
                headers={"Content-Type": "text/plain; charset=utf-8", **self._auth_headers},
            )
            return
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self.bucket, org=self.org, record=body, write_precision=WritePrecision.MS
            )
        except ApiException as exc:
            raise self._api_error(exc, "write") from None
        except Exception as exc:  # urllib3 connection errors, timeouts, resets
            raise InfluxUnavailable(f"InfluxDB write to {self.url} failed: {exc}") from None

    def write_isolating(self, lines: Sequence[str]) -> list[tuple[list[str], str]]:
        """Write ``lines``; when the server refuses them (400), isolate the refused ones.

        A refused chunk is halved and each half written again (one line alone below
        :data:`ISOLATE_ONE_BY_ONE`), so every line the server accepts is written and
        only the refused ones are returned, as ``[(lines, server's answer)]`` —
        single lines unless :data:`MAX_ISOLATING_REQUESTS` ran out. Points carry
        their timestamps, so a line written twice (a partial write, then its half
        again) is stored once. Raises :class:`InfluxUnavailable` as
        :meth:`write_lines` does (some chunks may be written by then: writing the
        whole batch again later is harmless).
        """
        refused: list[tuple[list[str], str]] = []
        pending = [list(lines)] if lines else []
        requests = 0
        while pending:
            chunk = pending.pop()
            try:
                requests += 1
                self.write_lines(chunk)
            except InfluxRejected as exc:
                if len(chunk) == 1 or requests >= MAX_ISOLATING_REQUESTS:
                    refused.append((chunk, str(exc)))
                elif len(chunk) <= ISOLATE_ONE_BY_ONE:
                    pending.extend([line] for line in reversed(chunk))
                else:
                    mid = len(chunk) // 2
                    pending.extend((chunk[mid:], chunk[:mid]))
        return refused

    @classmethod
    def _api_error(cls, exc: ApiException, what: str) -> InfluxError:
        return cls._http_error(exc.status, exc.body, what)

    @staticmethod
    def _http_error(status: int | None, body: Any, what: str) -> InfluxError:
        body = (body or b"")[:500] if isinstance(body, bytes | str) else ""
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        message = f"InfluxDB {what}: HTTP {status} {body}".strip()
        if status in (401, 403):
            message += " (wrong or missing credentials: user:password in INFLUX_URL, or INFLUX_TOKEN)"
        # 404 = database/bucket not found (yet): a configuration the operator can fix, keep the data.
        if status is not None and 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
            return InfluxRejected(message)
        return InfluxUnavailable(message)

    # -- queries (InfluxQL, v1 /query; v2 servers map it through DBRP)

    def query(self, q: str, *, database: str | None = None) -> list[dict[str, Any]]:
        """Run one InfluxQL statement; return its series (timestamps as epoch ms)."""
        params = [("q", q), ("epoch", "ms")]
        db = self.database if database is None else database
        if db:
            params.append(("db", db))
        resp = self._request(
            "POST",
            "/query",
            "query",
            params=params,
            headers={"Accept": "application/json", **self._auth_headers},
        )
        try:
            data = json.loads(resp.data)
        except ValueError as exc:
            raise InfluxUnavailable(f"InfluxDB query on {self.url}: not JSON: {exc}") from None
        result = (data.get("results") or [{}])[0]
        if "error" in result:
            raise InfluxRejected(f"InfluxQL error: {result['error']}")
        return result.get("series", [])

    def ping(self) -> bool:
        try:
            return self._http.request("GET", f"{self.url}/ping").status == 204
        except Exception:
            return False

    def ensure_database(self) -> None:
        """Create the v1 database if it is missing (idempotent; v2 buckets are made by their admin)."""
        if not self.v2:
            self.query(f"CREATE DATABASE {quote_ident(self.database)}", database="")

    def telemetry_series(
        self, lab: str, machine: str, since: datetime | int, fields: Iterable[str] | None = None
    ) -> dict[str, list[tuple[int, float]]]:
        """The machine's telemetry since ``since`` (datetime or epoch ms): ``{field: [(ts_ms, value), …]}``.

        For the machine page's charts. ``fields`` None means every field.
        """
        since_ms = int(since.timestamp() * 1000) if isinstance(since, datetime) else int(since)
        names = list(fields) if fields is not None else None
        select = ", ".join(quote_ident(f) for f in names) if names else "*"
        q = (
            f"SELECT {select} FROM {quote_ident(TELEMETRY)} WHERE lab = {quote_str(lab)} "  # noqa: S608 - quoted
            f"AND machine = {quote_str(machine)} AND time >= {since_ms}ms ORDER BY time ASC"
        )
        series = self.query(q)
        out: dict[str, list[tuple[int, float]]] = {name: [] for name in names or []}
        tag_columns = {"lab", "machine", "machine_type", "adapter"}
        for s in series:
            columns = s.get("columns", [])
            for row in s.get("values", []):
                ts = int(row[0])
                for name, value in zip(columns[1:], row[1:], strict=False):
                    if value is None or name in tag_columns or isinstance(value, str):
                        continue
                    out.setdefault(name, []).append((ts, float(value)))
        return out

    def chart_series(
        self, lab: str, machine: str, start: datetime, end: datetime, *, points: int = 300
    ) -> dict[str, list[tuple[int, float]]]:
        """The machine's telemetry from ``start`` to ``end`` averaged for a chart: ``{field: [(ts_ms, mean), …]}``.

        InfluxDB averages the readings into about ``points`` buckets (``GROUP BY
        time``, empty buckets left out), so a day of one-second telemetry is a few
        hundred points, not 86,400 rows; a bucket's time is its start. Fields are
        the reading names; points come in time order.
        """
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        bucket_s = max(1, (end_ms - start_ms) // 1000 // max(points, 1))
        conditions = [
            f"{quote_ident('lab')} = {quote_str(lab)}",
            f"{quote_ident('machine')} = {quote_str(machine)}",
            f"time >= {start_ms}ms",
            f"time <= {end_ms}ms",
        ]
        # Every value is quoted by quote_ident/quote_str or is an integer.
        q = f"SELECT mean(*) FROM {quote_ident(TELEMETRY)} WHERE {' AND '.join(conditions)} "  # noqa: S608
        q += f"GROUP BY time({bucket_s}s) fill(none)"
        out: dict[str, list[tuple[int, float]]] = {}
        for block in self.query(q):
            columns = block.get("columns", [])
            for row in block.get("values", []):
                for column, value in zip(columns[1:], row[1:], strict=False):
                    if value is None or isinstance(value, str | bool):
                        continue
                    out.setdefault(column.removeprefix("mean_"), []).append((int(row[0]), float(value)))
        return out

    def field_on_seconds(
        self,
        lab: str,
        machine: str,
        field: str,
        start: datetime,
        end: datetime,
        *,
        reading_cap_s: float,
        bucket_s: int = 60,
        max_buckets: int = 20_000,
    ) -> float:
        """Seconds from ``start`` to ``end`` during which the machine's ``field`` was above 0 (laser on).

        Method: InfluxDB counts, per ``GROUP BY time`` bucket, the readings of ``field`` (``n``) and
        those above 0 (``n_on``); two statements, so a year is a few thousand rows, not millions of
        points. Readings are samples taken every ``c`` seconds (the bridge's poll interval, whatever it
        is set to), so each stands for ``c`` seconds and a bucket's on-time is ``n_on · c``. ``c`` is
        read from the data: a bucket of width ``w`` (clipped to ``[start, end)``) shows ``w / n``; the
        median of that over the buckets is the cadence, bounded by ``reading_cap_s`` (the link's
        expected telemetry interval), and a bucket uses ``min(w / n, cadence)``. A bucket only partly
        covered (the bridge went silent or came back inside it) shows a longer ``w / n`` than the
        truth; the median, which such buckets cannot move while most are covered, keeps it from
        stretching a few readings over the whole bucket.

        Error: sampling misses or adds at most one reading interval per switch on or off (with a 1 s
        poll, about a second per job), plus the cadence's own spread (a bucket that lost a reading
        counts a reading short). Readings never sent (the bridge offline) count as off. ``bucket_s``
        grows with the range so that at most ``max_buckets`` rows come back. Raises
        :class:`InfluxError` like :meth:`query`.
        """
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        if end_ms <= start_ms:
            return 0.0
        bucket_ms = max(int(bucket_s), -(-(end_ms - start_ms) // 1000 // max(max_buckets, 1))) * 1000
        base = (
            f"FROM {quote_ident(TELEMETRY)} WHERE {quote_ident('lab')} = {quote_str(lab)} "
            f"AND {quote_ident('machine')} = {quote_str(machine)} "
            f"AND time >= {start_ms}ms AND time < {end_ms}ms"
        )
        group = f" GROUP BY time({bucket_ms}ms) fill(none)"
        column = quote_ident(field)
        # Every value is quoted by quote_ident/quote_str or is an integer.
        all_counts = self._bucket_counts(f"SELECT count({column}) {base}{group}")
        on_counts = self._bucket_counts(f"SELECT count({column}) {base} AND {column} > 0{group}")
        return on_seconds(all_counts, on_counts, start_ms, end_ms, bucket_ms, reading_cap_s)

    def first_reading_ms(
        self, lab: str, machine: str, field: str, start: datetime, end: datetime
    ) -> int | None:
        """The time (epoch ms) of the machine's first ``field`` reading in ``[start, end)``, or None.

        Read from the default retention policy, as :meth:`field_on_seconds` reads: where its readings
        begin tells what expired from it (machine care's laser-on hours, :mod:`devices.care`).
        """
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        q = (
            f"SELECT first({quote_ident(field)}) FROM {quote_ident(TELEMETRY)} "  # noqa: S608 - quoted
            f"WHERE {quote_ident('lab')} = {quote_str(lab)} AND {quote_ident('machine')} = {quote_str(machine)} "
            f"AND time >= {start_ms}ms AND time < {end_ms}ms"
        )
        for block in self.query(q):
            for row in block.get("values", [])[:1]:
                return int(row[0])
        return None

    def _bucket_counts(self, q: str) -> dict[int, int]:
        """``{bucket start ms: count}`` of a ``SELECT count(…) … GROUP BY time`` statement (empty left out)."""
        out: dict[int, int] = {}
        for block in self.query(q):
            for row in block.get("values", []):
                if len(row) > 1 and isinstance(row[1], int | float) and row[1] > 0:
                    out[int(row[0])] = int(row[1])
        return out


def on_seconds(
    all_counts: Mapping[int, int],
    on_counts: Mapping[int, int],
    start_ms: int,
    end_ms: int,
    bucket_ms: int,
    reading_cap_s: float,
) -> float:
    """The on-time of :meth:`InfluxStore.field_on_seconds` from its counts per bucket (method there).

    ``all_counts``/``on_counts``: ``{bucket start ms: readings}`` and ``{…: readings above 0}`` of
    ``[start_ms, end_ms)``. A function of its own because the hourly downsampling
    (:mod:`devices.influx_retention`) estimates each hour the same way.
    """
    if not on_counts:
        return 0.0

    def spacing(bucket: int, n: int) -> float:
        return (min(bucket + bucket_ms, end_ms) - max(bucket, start_ms)) / 1000 / n

    spacings = sorted(spacing(b, n) for b, n in all_counts.items())
    cadence = min(spacings[len(spacings) // 2] if spacings else reading_cap_s, reading_cap_s)
    total = 0.0
    for bucket, n_on in on_counts.items():
        n = max(all_counts.get(bucket, n_on), n_on)
        total += n_on * min(spacing(bucket, n), cadence)
    return total


def quote_ident(name: str) -> str:
    """An InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """An InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
