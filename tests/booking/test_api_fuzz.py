"""Hostile input never gives a 500, always gets a {"code", "detail"} body and never saves half a booking.

Property-based (hypothesis, no deadline): arbitrary JSON, form and raw bodies
and query strings against the booking, availability and token endpoints. The
strategies mix plain garbage with near-valid requests (real machine ids,
aligned times a few days ahead, odd offsets) so that the rule engine, not only
the parser, is exercised.

Then schemathesis, driven from the OpenAPI schema at /api/schema/, checks every
operation with data that fits the schema and data that breaks it: no server
error, and every status code, content type and body is the documented one.
"""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
import schemathesis
from django.core import signals
from django.core.cache import cache
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from fablab.booking.models import Booking
from tests.factories import (
    BookingFactory,
    CertificationFactory,
    LabFactory,
    MachineFactory,
    MaintenanceWindowFactory,
    QuotaPolicyFactory,
    TrainingFactory,
    UserFactory,
    api_token,
)

pytestmark = pytest.mark.django_db

BRUSSELS = ZoneInfo("Europe/Brussels")
FUZZ = settings(
    max_examples=150,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Strategies

nasty_strings = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "x\udfff",
        "\u202e",
        "😀" * 50,
        "x" * 5000,
        "null",
        "NaN",
        "-1",
        "1e309",
        "9" * 40,
        "0x10",
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "../../etc/passwd",
        "%00",
        "Z",
        "T",
        "+01:00",
        "2026-13-01T00:00:00Z",
        "2026-02-30T10:00:00+01:00",
        "2026-03-29T02:30:00+01:00",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "2026-03-02T09:00:00+99:00",
        "2026-03-02T09:00:00+01:00:30",
        "2026-03-02",
        "09:00",
        "2026-W10-1T09:00:00+01:00",
    ]
)
text = st.text(max_size=60) | nasty_strings
json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def near(days: int, minutes: int) -> dt.datetime:
    day = timezone.localdate(timezone.now(), BRUSSELS) + dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60), tzinfo=BRUSSELS)


#: Lab-local times from yesterday to a month ahead, mostly on half hours within opening hours.
near_times = st.builds(
    near,
    st.integers(-1, 30),
    st.integers(14, 42).map(lambda half: half * 30) | st.integers(0, 24 * 60 - 1),
)


@st.composite
def spelled(draw, moment: dt.datetime) -> str:
    """``moment`` written as a client might: with the lab's offset, in UTC, naive or with a foreign offset."""
    style = draw(st.sampled_from(["local"] * 6 + ["utc", "utc", "Z", "naive", "+05:30", "-11:00", "+14:00"]))
    if style == "local":
        return moment.isoformat()
    if style == "utc":
        return moment.astimezone(dt.UTC).isoformat()
    if style == "Z":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "naive":
        return moment.replace(tzinfo=None).isoformat()
    return moment.replace(tzinfo=None).isoformat() + style


@st.composite
def times(draw) -> str:
    """A datetime string: often near and well-formed (to reach the rules), sometimes anything."""
    kind = draw(st.sampled_from(["near", "near", "any", "garbage"]))
    if kind == "garbage":
        return draw(text)
    if kind == "any":
        return draw(st.datetimes(timezones=st.none() | st.timezones())).isoformat()
    return draw(spelled(draw(near_times)))


def real_machines(world) -> st.SearchStrategy:
    return st.sampled_from([m.pk for m in world["machines"]])


@st.composite
def machine_ids(draw, world) -> object:
    """Mostly the ids of real machines; otherwise any integer (huge ones too) or any JSON."""
    if draw(st.integers(0, 3)):
        return draw(real_machines(world))
    return draw(st.integers() | st.integers(min_value=2**63 - 5, max_value=2**70) | json_values)


@st.composite
def booking_bodies(draw, world) -> object:
    kind = draw(
        st.sampled_from(["plausible", "plausible", "plausible", "mangled", "mangled", "not-an-object"])
    )
    if kind == "not-an-object":
        return draw(json_values)
    if kind == "plausible":
        # Well-formed: the rules decide (slot, opening hours, duration, quota, notice, training...).
        start = draw(near_times)
        minutes = draw(st.sampled_from([-60, 0, 15, 30, 30, 60, 60, 90, 120, 240, 300, 60 * 24]))
        return {
            "machine": draw(real_machines(world)),
            "start": draw(spelled(start)),
            "end": draw(spelled(start + dt.timedelta(minutes=minutes))),
            "purpose": draw(st.text(max_size=300) if draw(st.integers(0, 4)) else text),
        }
    body = {}
    fields = {
        "machine": machine_ids(world),
        "start": times() | json_values,
        "end": times() | json_values,
        "purpose": text | json_values,
    }
    for name, strategy in fields.items():
        if draw(st.integers(0, 5)):
            body[name] = draw(strategy)
    body.update(draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)))
    return body


@st.composite
def query_strings(draw, names: list[str]) -> str:
    kind = draw(st.sampled_from(["range", "range", "params", "raw"]))
    if kind == "raw":
        # Possibly broken percent-encoding.
        return draw(st.text(alphabet="abcdefgtoz=&%+;0123456789:-TZ.\\ ", max_size=80))
    params = {}
    if kind == "range":
        start = draw(near_times)
        end = start + dt.timedelta(hours=draw(st.integers(-48, 70 * 24)))
        params = {"from": draw(spelled(start)), "to": draw(spelled(end))}
    keys = st.sampled_from(names) | st.text(max_size=6)
    values = times() | st.text(max_size=40) | st.integers().map(str) | st.just("")
    params.update(draw(st.dictionaries(keys, values, max_size=2 if kind == "range" else len(names) + 1)))
    # Encoded by hand: lone surrogates become the bytes a sloppy client would send.
    return urlencode(
        {k.encode("utf-8", "surrogatepass"): v.encode("utf-8", "surrogatepass") for k, v in params.items()}
    )


# The scene


@pytest.fixture
def world():
    cache.clear()
    maker = UserFactory()
    lab = LabFactory()
    training = TrainingFactory()
    machines = [
        MachineFactory(lab=lab),
        MachineFactory(lab=lab, required_training=training, approval_required=True, buffer_minutes=15),
        MachineFactory(lab=lab, min_notice_minutes=24 * 60, max_days_ahead=7, slot_minutes=60),
        MachineFactory(lab=lab, bookable=False),
    ]
    CertificationFactory(member=maker, training=training)
    QuotaPolicyFactory(machine_type=machines[0].machine_type, max_hours_per_week=6, max_future_bookings=4)
    at = lambda days, hour: near(days, hour * 60)  # noqa: E731
    # Someone else's bookings and maintenance, so that slot_taken and maintenance are reachable.
    for days in range(1, 15):
        BookingFactory(machine=machines[0], start=at(days, 10), end=at(days, 14))
        MaintenanceWindowFactory(machine=machines[1], start=at(days, 9), end=at(days, 13))
    client = APIClient()
    token = api_token(maker)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return {"maker": maker, "lab": lab, "machines": machines, "client": client, "token": token}


def check(response, bookings_before: int) -> None:
    """The invariants every response must keep."""
    assert response.status_code < 500
    after = Booking.objects.count()
    if 400 <= response.status_code < 500:
        assert response["Content-Type"] == "application/json", response.content
        data = response.json()
        event(f"{response.status_code} {data.get('code') if isinstance(data, dict) else '?'}")
        assert isinstance(data, dict) and set(data) <= {"code", "detail", "fields"}, data
        assert isinstance(data["code"], str) and data["code"]
        assert isinstance(data["detail"], str) and data["detail"]
        if "fields" in data:
            assert isinstance(data["fields"], dict) and data["fields"]
            assert all(isinstance(m, str) for messages in data["fields"].values() for m in messages)
        assert after == bookings_before, "a refused request left a booking behind"
    else:
        event(str(response.status_code))
    if response.status_code == 201:
        replayed = response.get("Idempotent-Replayed") == "true"
        assert after == bookings_before + (0 if replayed else 1)
        booking = Booking.objects.get(pk=response.json()["id"])
        assert booking.start < booking.end
    elif response.status_code < 400:
        assert response.status_code == 200
        assert after == bookings_before


# The properties


@FUZZ
@given(data=st.data())
def test_booking_bodies_as_json(world, data):
    payload = data.draw(booking_bodies(world))
    raw = json.dumps(payload, ensure_ascii=True).encode()
    headers = {}
    if data.draw(st.booleans()):
        # Retries with a few recurring keys, and some broken ones.
        headers["HTTP_IDEMPOTENCY_KEY"] = data.draw(st.sampled_from(["k1", "k2", "k3"]) | text)
    before = Booking.objects.count()
    response = world["client"].generic(
        "POST", "/api/v1/bookings/", raw, content_type="application/json", **headers
    )
    check(response, before)


@FUZZ
@given(data=st.data())
def test_booking_bodies_as_form_data(world, data):
    payload = data.draw(booking_bodies(world))
    if not isinstance(payload, dict):
        payload = {"payload": payload}
    # Forms carry strings only (and no lone surrogates: the client cannot encode them).
    form = {str(k): str(v).encode("utf-8", "replace").decode() for k, v in payload.items() if k}
    before = Booking.objects.count()
    response = world["client"].post("/api/v1/bookings/", form)
    check(response, before)


@FUZZ
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=latin-1",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "text/plain",
            "application/xml",
            "",
        ]
    ),
)
def test_raw_bodies(world, raw, content_type):
    before = Booking.objects.count()
    response = world["client"].generic("POST", "/api/v1/bookings/", raw, content_type=content_type)
    check(response, before)


@FUZZ
@given(data=st.data())
def test_availability_query_strings(world, data):
    machine_id = data.draw(real_machines(world) if data.draw(st.integers(0, 3)) else st.integers(0, 2**80))
    query = data.draw(query_strings(["from", "to"]))
    url = f"/api/v1/machines/{machine_id}/availability/"
    before = Booking.objects.count()
    response = world["client"].get(f"{url}?{query}")
    check(response, before)
    if response.status_code == 200:
        for interval in response.json():
            assert dt.datetime.fromisoformat(interval["start"]) < dt.datetime.fromisoformat(interval["end"])


@FUZZ
@given(data=st.data())
def test_list_query_strings(world, data):
    path = data.draw(st.sampled_from(["/api/v1/bookings/", "/api/v1/machines/", "/api/v1/labs/"]))
    query = data.draw(query_strings(["from", "to", "lab", "machine", "status", "type"]))
    before = Booking.objects.count()
    response = world["client"].get(f"{path}?{query}")
    check(response, before)


@FUZZ
@given(
    booking_id=st.integers(min_value=0, max_value=2**80),
    action=st.sampled_from(["", "cancel/", "approve/", "decline/"]),
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]),
    raw=st.binary(max_size=40),
)
def test_booking_actions_on_arbitrary_ids(world, booking_id, action, method, raw):
    before = Booking.objects.count()
    response = world["client"].generic(
        method, f"/api/v1/bookings/{booking_id}/{action}", raw, content_type="application/json"
    )
    check(response, before)


@FUZZ
@given(body=json_values)
def test_token_bodies(world, body):
    cache.clear()  # the login throttle is not what is under test here
    raw = json.dumps(body, ensure_ascii=True).encode()
    response = APIClient().generic("POST", "/api/v1/auth/token/", raw, content_type="application/json")
    before = Booking.objects.count()
    check(response, before)
    assert response.status_code == 400


# Schemathesis, from the published schema. (Its pytest plugin does not run on pytest 9 yet,
# so each operation's strategy is driven by hypothesis directly.)

SCHEMA = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
# Operations without parameters or a body have no way to be called "wrongly".
NEGATIVE = [label for label, op in OPERATIONS.items() if len(op.path_parameters) or len(op.query) or op.body]
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_world(world):
    """The scene, reachable through the bare WSGI handler inside the test's transaction."""
    # Like Django's test client: a new request must not close the test's connection.
    signals.request_started.disconnect(close_old_connections)
    yield world
    signals.request_started.connect(close_old_connections)


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)]
    + [(label, GenerationMode.NEGATIVE) for label in sorted(NEGATIVE)],
)
def test_schema_conformance(wsgi_world, label, mode):
    operation = OPERATIONS[label]
    token = wsgi_world["token"]

    @settings(FUZZ, max_examples=30)
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        cache.clear()
        before = Booking.objects.count()
        response = case.call(headers={"Authorization": f"Token {token}"})
        case.validate_response(response, checks=CONFORMANCE)
        if 400 <= response.status_code < 500:
            assert Booking.objects.count() == before

    call()
