"""Malformed and hostile messages never stop the hub; each is counted under its reason.

A corpus of 10,000 hostile messages, generated from a fixed seed, covers every
bound of the contract: bytes that are not JSON, integers of 5,000 digits,
nesting past the parser's limit and past the contract's, ``NaN``, ``1e400``,
integers that ``float()`` cannot convert, ``seq`` past 2**63, timestamps from
the future and from a clock that was never set, too many readings, wrong types,
payloads over 16 KiB, topics that break the contract, machines and bridges
that do not exist — and telemetry whose bad readings must be left out while
its good ones are kept. Each case says what the hub must do with it, without
asking the protocol module.

All 10,000 go through the hub's own message handler (the code paho's messages
reach, with the real database); a sample of 500 goes through a real Mosquitto
to a running hub, after which a valid message still lands.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from devices.hub import Hub
from devices.hub_stats import (
    BAD_JSON,
    BAD_TOPIC,
    INVALID,
    TOO_LARGE,
    UNEXPECTED,
    UNKNOWN_BRIDGE,
    UNKNOWN_MACHINE,
)
from devices.influx import InfluxStore
from devices.influx_spool import Spool
from devices.models import MachineStatus
from firmware_bridge import protocol
from tests.devices.conftest import hub_thread, make_machine, new_sid, store_for, wait_until
from tests.factories import LabFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAB, MACHINE, BRIDGE = "bxl-centre", "prusa-1", "bridge-1"
CASES = 10_000
BROKER_SAMPLE = 500
#: The expectation of a message the hub takes, of which ``refused`` readings are left out.
PARTIAL = "partial"

MINUTE = 60_000
DAY = 24 * 60 * MINUTE


@dataclasses.dataclass(frozen=True)
class Case:
    category: str
    topic: str
    payload: bytes
    expect: str  # a refusal reason of devices.hub, or PARTIAL
    refused: int = 0  # readings left out (PARTIAL)


def _dumps(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


class Corpus:
    """Hostile messages from a seeded generator; ``now`` is the hub's clock, give or take a minute."""

    def __init__(self, seed: int = 20260512, now: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.now = protocol.now_ms() if now is None else now
        self.seq = 0

    # -- valid building blocks

    def sid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ts(self) -> int:
        return self.now - self.rng.randint(0, 3 * DAY)

    def telemetry(self, **over: object) -> dict:
        self.seq += 1
        values = {name: round(self.rng.uniform(-1e6, 1e6), 3) for name in self.names(1, 4)}
        return {"v": 1, "ts": self.ts(), "sid": self.sid(), "seq": self.seq, "values": values, **over}

    def names(self, low: int, high: int) -> list[str]:
        return self.rng.sample(protocol.TELEMETRY_NAMES, self.rng.randint(low, high))

    def status(self, **over: object) -> dict:
        return {
            "v": 1,
            "state": "idle",
            "enabled": True,
            "bridge": BRIDGE,
            "adapter": "octoprint",
            "job": None,
            "error": None,
            "ts": self.ts(),
            **over,
        }

    def event(self, **over: object) -> dict:
        self.seq += 1
        return {"v": 1, "ts": self.ts(), "sid": self.sid(), "seq": self.seq, "type": "alarm", **over}

    def ack(self, **over: object) -> dict:
        return {"v": 1, "id": self.sid(), "ok": True, "error": None, "ts": self.ts(), **over}

    def base(self, kind: str, **over: object) -> dict:
        return {"status": self.status, "telemetry": self.telemetry, "event": self.event, "cmd/ack": self.ack}[
            kind
        ](**over)

    def topic(self, kind: str, machine: str = MACHINE) -> str:
        return f"{protocol.PREFIX}/{LAB}/{machine}/{kind}"

    def kind(self) -> str:
        return self.rng.choice(("status", "telemetry", "event", "cmd/ack"))

    def raw(self, data: dict, key: str, literal: str) -> bytes:
        """``data`` as JSON with ``key``'s value spelled ``literal`` (json.dumps cannot write some)."""
        marker = f"@@{self.rng.getrandbits(32)}@@"
        text = json.dumps({**data, key: marker}, separators=(",", ":"))
        return text.replace(f'"{marker}"', literal).encode()

    # -- the categories: each returns one Case

    def not_utf8(self) -> Case:
        body = b"\xff" + self.rng.randbytes(self.rng.randint(0, 200))
        return Case("not_utf8", self.topic(self.kind()), body, BAD_JSON)

    def not_json(self) -> Case:
        junk = self.rng.choice(["{", "[1,", '{"v":1,', "nul", "{'v': 1}", '{"v":1}}', "\x00"])
        return Case(
            "not_json", self.topic(self.kind()), (junk + "x" * self.rng.randint(0, 50)).encode(), BAD_JSON
        )

    def not_an_object(self) -> Case:
        body = self.rng.choice(["[]", "1", '"v"', "null", "true", "[{}]", '[{"v":1}]'])
        return Case("not_an_object", self.topic(self.kind()), body.encode(), BAD_JSON)

    def digits_5000(self) -> Case:
        kind = self.kind()
        digits = "9" * self.rng.randint(4301, 15_000)
        key = self.rng.choice({"telemetry": ["ts", "seq", "v"], "status": ["ts", "v"]}.get(kind, ["ts", "v"]))
        return Case("digits_5000", self.topic(kind), self.raw(self.base(kind), key, digits), BAD_JSON)

    def digits_5000_reading(self) -> Case:
        digits = "-" * self.rng.randint(0, 1) + "9" * self.rng.randint(4301, 15_000)
        data = self.telemetry()
        text = json.dumps(data, separators=(",", ":"))
        text = text.replace('"values":{', f'"values":{{"power_w":{digits},', 1)
        return Case("digits_5000_reading", self.topic("telemetry"), text.encode(), BAD_JSON)

    def too_deep_for_json(self) -> Case:
        # Python 3.11's json gives up (RecursionError) near 1,000 levels; 16 KiB holds 2,600 of "{"a":…}".
        opener, closer = self.rng.choice((("[", "]"), ('{"a":', "}")))
        depth = self.rng.randint(1500, 8000 if opener == "[" else 2600)
        body = '{"v":1,"detail":' + opener * depth + "1" + closer * depth + "}"
        return Case("too_deep_for_json", self.topic(self.kind()), body.encode(), BAD_JSON)

    def too_deep_for_contract(self) -> Case:
        depth = self.rng.randint(protocol.MAX_DEPTH + 1, 300)
        nested: object = 1
        for _ in range(depth):
            nested = [nested] if self.rng.random() < 0.5 else {"k": nested}
        return Case(
            "too_deep_for_contract", self.topic("event"), _dumps(self.event(detail={"x": nested})), INVALID
        )

    def non_finite_literal(self) -> Case:
        kind = self.rng.choice(("telemetry", "status", "event"))
        literal = self.rng.choice(("NaN", "Infinity", "-Infinity"))
        data = self.base(kind)
        key = "ts" if kind != "telemetry" or self.rng.random() < 0.5 else "values"
        value = literal if key == "ts" else f'{{"power_w":{literal}}}'
        return Case("non_finite_literal", self.topic(kind), self.raw(data, key, value), INVALID)

    def overflowing_reading(self) -> Case:
        """The only reading: 1e400 (inf), an integer float() cannot convert, or just past 2**53."""
        value = self.rng.choice(
            [
                "1e400",
                "-1e400",
                f"1e{self.rng.randint(309, 5000)}",
                str(10 ** self.rng.randint(309, 4000)),
                str(-(10 ** self.rng.randint(17, 308))),
                f"{self.rng.uniform(1.0001, 9.9)}e{self.rng.randint(16, 300)}",
                str(protocol.MAX_READING + self.rng.randint(1, 10**6)),
            ]
        )
        data = self.telemetry()
        return Case(
            "overflowing_reading",
            self.topic("telemetry"),
            self.raw(data, "values", f'{{"power_w":{value}}}'),
            INVALID,
        )

    def bad_seq(self) -> Case:
        kind = self.rng.choice(("telemetry", "event"))
        seq = self.rng.choice([-1, -(2**70), 2**63, 2**63 + self.rng.randint(0, 2**40), 10**200])
        return Case("bad_seq", self.topic(kind), _dumps(self.base(kind, seq=seq)), INVALID)

    def future_ts(self) -> Case:
        kind = self.kind()
        ts = self.now + self.rng.choice([10 * MINUTE, DAY, 365 * DAY, 10**13]) + self.rng.randint(0, MINUTE)
        return Case("future_ts", self.topic(kind), _dumps(self.base(kind, ts=ts)), INVALID)

    def ancient_ts(self) -> Case:
        kind = self.kind()
        ts = self.rng.choice([0, 1, self.rng.randint(0, self.now - protocol.MAX_AGE_MS - DAY)])
        return Case("ancient_ts", self.topic(kind), _dumps(self.base(kind, ts=ts)), INVALID)

    def ts_past_year_9999(self) -> Case:
        kind = self.kind()
        ts = self.rng.choice([protocol.MAX_TS_MS + 1, 2**63, 10**30])
        return Case("ts_past_year_9999", self.topic(kind), _dumps(self.base(kind, ts=ts)), INVALID)

    def too_many_readings(self) -> Case:
        n = self.rng.randint(protocol.MAX_READINGS + 1, 600)
        values = {f"r{i}": i for i in range(n)}
        return Case(
            "too_many_readings", self.topic("telemetry"), _dumps(self.telemetry(values=values)), INVALID
        )

    def only_bad_readings(self) -> Case:
        values = {self.rng.choice(["Power", "1x", "a b", "_x", "x" * 65]): 1}
        if self.rng.random() < 0.5:
            values = {"power_w": self.rng.choice(["hot", None, True, [1], {"a": 1}])}
        return Case(
            "only_bad_readings", self.topic("telemetry"), _dumps(self.telemetry(values=values)), INVALID
        )

    def some_bad_readings(self) -> Case:
        """Valid readings and bad ones in one message: the good ones are kept, the bad ones counted."""
        good = {name: round(self.rng.uniform(0, 300), 2) for name in self.names(1, 5)}
        bad_makers = [
            lambda: ("Bad_Name", 1.0),
            lambda: ("x" * 70, 2.0),
            lambda: ("temp_text_c", "hot"),
            lambda: ("flag", True),
            lambda: ("nothing", None),
            lambda: ("listed", [1, 2]),
            lambda: ("huge", 10**30),
            lambda: ("tiny", -(2**60)),
        ]
        bad = dict(maker() for maker in self.rng.sample(bad_makers, self.rng.randint(1, 4)))
        items = list(good.items()) + list(bad.items())
        self.rng.shuffle(items)
        data = self.telemetry(values=dict(items))
        return Case("some_bad_readings", self.topic("telemetry"), _dumps(data), PARTIAL, refused=len(bad))

    def some_overflowing_readings(self) -> Case:
        """A good reading next to 1e400 or a 400-digit integer (json.dumps cannot write them)."""
        data = self.telemetry(values={"power_w": 12.5})
        literal = self.rng.choice(["1e400", "-1e999", str(10**400), "NaN"])
        if literal == "NaN":  # a constant refuses the whole payload, not one reading
            return Case(
                "some_overflowing_readings",
                self.topic("telemetry"),
                self.raw(data, "values", '{"power_w":1,"x":NaN}'),
                INVALID,
            )
        body = self.raw(data, "values", f'{{"power_w":12.5,"energy_wh":{literal}}}')
        return Case("some_overflowing_readings", self.topic("telemetry"), body, PARTIAL, refused=1)

    def wrong_types(self) -> Case:
        kind = self.kind()
        field, value = self.rng.choice(
            {
                "status": [
                    ("state", "busy"),
                    ("state", 3),
                    ("enabled", "yes"),
                    ("enabled", 1),
                    ("bridge", "NOT A SLUG"),
                    ("adapter", ""),
                    ("job", "j"),
                    ("job", {"id": "j"}),
                    ("error", {"code": ""}),
                    ("spool_dropped", -1),
                    ("ts", "now"),
                    ("ts", 1.5),
                    ("v", 2),
                ],
                "telemetry": [
                    ("values", []),
                    ("values", {}),
                    ("values", 3),
                    ("sid", "not-a-uuid"),
                    ("sid", 7),
                    ("seq", "1"),
                    ("seq", True),
                    ("ts", None),
                    ("v", "1"),
                ],
                "event": [
                    ("type", "Bad Type"),
                    ("type", None),
                    ("detail", [1, 2]),
                    ("detail", "text"),
                    ("job", 5),
                    ("detail", {"n": 2**64}),
                ],
                "cmd/ack": [
                    ("ok", "true"),
                    ("ok", None),
                    ("id", 5),
                    ("id", ""),
                    ("error", {"code": "oops", "message": "m"}),
                    ("ts", -1),
                ],
            }[kind]
        )
        data = self.base(kind, **{field: value})
        if kind == "cmd/ack" and field == "error":
            data["ok"] = False
        return Case("wrong_types", self.topic(kind), _dumps(data), INVALID)

    def missing_field(self) -> Case:
        kind = self.kind()
        data = self.base(kind)
        required = {
            "status": ["state", "enabled", "bridge", "adapter", "ts", "v"],
            "telemetry": ["ts", "sid", "seq", "values", "v"],
            "event": ["ts", "sid", "seq", "type", "v"],
            "cmd/ack": ["id", "ok", "ts", "v"],
        }[kind]
        del data[self.rng.choice(required)]
        return Case("missing_field", self.topic(kind), _dumps(data), INVALID)

    def too_large(self) -> Case:
        pad = "x" * self.rng.randint(protocol.MAX_PAYLOAD_BYTES, 60_000)
        return Case("too_large", self.topic(self.kind()), _dumps(self.base(self.kind(), pad=pad)), TOO_LARGE)

    def unknown_machine(self) -> Case:
        topic = self.topic("telemetry", f"ghost-{self.rng.randint(0, 10**6)}")
        return Case("unknown_machine", topic, _dumps(self.telemetry()), UNKNOWN_MACHINE)

    def unknown_bridge(self) -> Case:
        topic = protocol.topic_bridge_online(f"ghost-{self.rng.randint(0, 10**6)}")
        return Case("unknown_bridge", topic, protocol.WILL_PAYLOAD, UNKNOWN_BRIDGE)

    def bad_topic(self) -> Case:
        """Topics a subscription matches (so they also pass a broker) that break the contract."""
        kind = self.kind()
        level = self.rng.choice(["UPPER", "-lead", "a" * 64, "sp ace", "dot.ted", "é", "_x", "x_y"])
        topic = self.rng.choice(
            [
                f"{protocol.PREFIX}/{level}/{MACHINE}/{kind}",
                f"{protocol.PREFIX}/{LAB}/{level}/{kind}",
                f"{protocol.PREFIX}/{protocol.BRIDGES}/{BRIDGE}/{kind}",
            ]
        )
        return Case("bad_topic", topic, _dumps(self.base(kind)), BAD_TOPIC)

    def commands_at_the_hub(self) -> Case:
        """A command reaching the hub (it only consumes what bridges send)."""
        body = _dumps({"v": 1, "id": "c1", "action": "pause", "ts": self.now})
        return Case("commands_at_the_hub", self.topic("cmd"), body, UNEXPECTED)

    CATEGORIES = (
        "not_utf8",
        "not_json",
        "not_an_object",
        "digits_5000",
        "digits_5000_reading",
        "too_deep_for_json",
        "too_deep_for_contract",
        "non_finite_literal",
        "overflowing_reading",
        "bad_seq",
        "future_ts",
        "ancient_ts",
        "ts_past_year_9999",
        "too_many_readings",
        "only_bad_readings",
        "some_bad_readings",
        "some_overflowing_readings",
        "wrong_types",
        "missing_field",
        "too_large",
        "unknown_machine",
        "unknown_bridge",
        "bad_topic",
        "commands_at_the_hub",
    )

    def cases(self, n: int) -> list[Case]:
        """``n`` cases, every category in turn (so each gets n / 24 of them), in a shuffled order."""
        out = [getattr(self, self.CATEGORIES[i % len(self.CATEGORIES)])() for i in range(n)]
        self.rng.shuffle(out)
        return out


def counters(hub: Hub) -> collections.Counter[str]:
    """The hub's refusal reasons plus the counters this test cares about, as one Counter."""
    snap = hub.hub_stats
    out = collections.Counter(snap["malformed_by_reason"])
    for name in ("telemetry", "readings_refused", "reading_names_refused", "processing_failed"):
        out[name] = snap.get(name, 0)
    return out


def expected_change(case: Case) -> collections.Counter[str]:
    if case.expect == PARTIAL:
        return collections.Counter({"telemetry": 1, "readings_refused": case.refused})
    return collections.Counter({case.expect: 1})


def fake_message(topic: str, payload: bytes) -> mqtt.MQTTMessage:
    """What paho hands the hub: a received PUBLISH (its topic as bytes, as on the wire)."""
    msg = mqtt.MQTTMessage(mid=1, topic=topic.encode())
    msg.payload = payload
    msg.qos = 1
    return msg


@pytest.fixture
def machine():
    lab = LabFactory(slug=LAB)
    return make_machine(lab, slug=MACHINE, bridge=BRIDGE)


@pytest.fixture
def offline_hub(tmp_path: Path) -> Iterator[Hub]:
    """A hub that is never connected: the tests call its message handler as paho's thread would."""
    hub = Hub(
        mqtt_url="mqtt://127.0.0.1:1",
        store=InfluxStore("http://127.0.0.1:1", database="unused"),
        spool=Spool(tmp_path / "spool.sqlite3"),
        client_id="hub-hostile",
    )
    hub.index.reload()
    try:
        yield hub
    finally:
        hub.spool.close()
        hub.store.close()


def test_ten_thousand_hostile_messages_are_each_refused_for_the_right_reason(machine, offline_hub):
    cases = Corpus().cases(CASES)
    assert len(cases) == CASES
    by_category = collections.Counter(c.category for c in cases)
    assert min(by_category.values()) >= CASES // len(Corpus.CATEGORIES) - 1, by_category
    lines_before = len(offline_hub._batch.lines)
    kept = 0
    for i, case in enumerate(cases):
        before = counters(offline_hub)
        offline_hub._handle(fake_message(case.topic, case.payload))  # any exception fails the test here
        change = counters(offline_hub) - before
        assert change == expected_change(case), (i, case.category, case.payload[:300], change)
        kept += case.expect == PARTIAL
    # The valid readings of the partly bad messages are on their way to InfluxDB, and nothing else.
    assert len(offline_hub._batch.lines) - lines_before == kept
    assert all("Bad_Name" not in line and "huge" not in line for line in offline_hub._batch.lines)
    stats = offline_hub.hub_stats
    assert stats["received"] == CASES
    assert stats["malformed"] == CASES - kept
    assert stats.get("processing_failed", 0) == 0
    assert set(stats["malformed_by_reason"]) == {
        BAD_JSON,
        INVALID,
        TOO_LARGE,
        BAD_TOPIC,
        UNKNOWN_MACHINE,
        UNKNOWN_BRIDGE,
        UNEXPECTED,
    }


def test_hostile_messages_through_the_broker_are_counted_and_the_hub_keeps_working(
    machine, broker, influx, publisher, tmp_path
):
    # Commands never reach the hub through the broker: it does not subscribe to them.
    sample = [c for c in Corpus(seed=7).cases(CASES) if c.expect != UNEXPECTED][:BROKER_SAMPLE]
    expected: collections.Counter[str] = collections.Counter()
    for case in sample:
        expected += expected_change(case)

    with hub_thread(broker, influx, tmp_path) as hub:
        for case in sample:
            publisher.publish(case.topic, case.payload, wait=False)
        refusals = sum(n for k, n in expected.items() if k not in ("telemetry", "readings_refused"))
        wait_until(lambda: hub.hub_stats.get("malformed", 0) >= refusals, what=f"{refusals} refusals")
        wait_until(lambda: hub.hub_stats.get("received", 0) >= BROKER_SAMPLE, what="every message")

        # Still alive: a valid status and reading land in the database and InfluxDB.
        ts = protocol.now_ms()
        status = protocol.Status(state="running", enabled=True, bridge=BRIDGE, adapter="octoprint", ts=ts)
        publisher.message(status, LAB, MACHINE)
        publisher.message(
            protocol.Telemetry(ts=ts, sid=new_sid(), seq=0, values={"power_w": 42}), LAB, MACHINE
        )
        wait_until(
            lambda: MachineStatus.objects.filter(machine=machine, state="running").exists(),
            what="the valid status",
        )
        wait_until(
            lambda: influx.count(f'SELECT count("power_w") FROM "telemetry" WHERE time >= {ts}ms') == 1,  # noqa: S608
            what="the valid point",
        )
        # Refused messages are acknowledged too (after the batch they belong to is written).
        wait_until(
            lambda: hub.hub_stats.get("acked", 0) >= BROKER_SAMPLE + 2, what="every message acknowledged"
        )
        got = counters(hub)
        stats = hub.hub_stats

    got["telemetry"] -= 1  # the valid reading above
    assert +got == +expected
    assert stats["received"] == stats["acked"] == BROKER_SAMPLE + 2
    # Every partly bad message's good readings reached InfluxDB (each has at least one).
    partial = sum(1 for c in sample if c.expect == PARTIAL)
    assert partial > 0
    assert stats["points_written"] >= partial + 2


def test_a_week_old_spooled_message_is_accepted(machine, broker, influx, publisher, tmp_path):
    """A bridge offline for a week replays its spool: nothing of it is refused."""
    week_ago = protocol.now_ms() - 7 * DAY
    sid = new_sid()
    with hub_thread(broker, influx, tmp_path) as hub:
        for seq in range(1, 51):
            msg = protocol.Telemetry(ts=week_ago + seq * 1000, sid=sid, seq=seq, values={"energy_wh": seq})
            publisher.message(msg, LAB, MACHINE, wait=False)
        publisher.message(
            protocol.Event(ts=week_ago + 60_000, sid=sid, seq=51, type="job_finished"), LAB, MACHINE
        )
        wait_until(
            lambda: influx.count('SELECT count("energy_wh") FROM "telemetry"') == 50, what="50 old points"
        )
        wait_until(lambda: hub.hub_stats.get("events", 0) == 1, what="the old event")
        stats = hub.hub_stats
    assert stats.get("malformed", 0) == 0


def test_a_timestamp_ten_minutes_ahead_is_refused_by_the_hub(machine, offline_hub, caplog):
    ahead = protocol.now_ms() + 10 * MINUTE
    topic = protocol.topic_telemetry(LAB, MACHINE)
    msg = protocol.Telemetry(ts=ahead, sid=new_sid(), seq=1, values={"power_w": 1.0})
    offline_hub._handle(fake_message(topic, protocol.encode(msg)))
    assert offline_hub.hub_stats["malformed_by_reason"] == {INVALID: 1}
    assert "ahead of the receiver's clock" in caplog.text
    assert offline_hub._batch.lines == []


def test_a_nul_or_lone_surrogate_in_free_text_is_replaced_and_the_status_and_event_are_kept(
    machine, offline_hub
):
    # PostgreSQL refuses NUL in text and jsonb, and no encoder takes a lone surrogate: before the
    # protocol cleaned them, one odd job name made the hub fail on every status of the machine.
    now = protocol.now_ms()
    status = {
        "v": 1,
        "state": "error",
        "enabled": True,
        "bridge": BRIDGE,
        "adapter": "octoprint",
        "ts": now,
        "job": {"id": "j1", "name": "cube\u0000\ud800.gcode", "started_ts": now, "progress_pct": 5},
        "error": {"code": "printer_error", "message": "Error:\u0000 heater \udfff"},
    }
    offline_hub._handle(fake_message(protocol.topic_status(LAB, MACHINE), json.dumps(status).encode()))
    offline_hub.messages.apply_statuses()
    event = {
        "v": 1,
        "ts": now,
        "sid": new_sid(),
        "seq": 1,
        "type": "alarm",
        "detail": {"text\u0000": ["\ud800", {"k": "\u0001"}]},
    }
    offline_hub._handle(fake_message(protocol.topic_event(LAB, MACHINE), json.dumps(event).encode()))
    stats = offline_hub.hub_stats
    assert stats.get("processing_failed", 0) == 0 and stats.get("malformed", 0) == 0
    live = MachineStatus.objects.get(machine=machine)
    assert live.state == "error"
    assert live.job_name == "cube\ufffd\ufffd.gcode"
    assert "\x00" not in live.error_message and "\ufffd" in live.error_message


def test_a_control_character_in_an_identifier_is_refused_as_invalid(machine, offline_hub):
    now = protocol.now_ms()
    status = {"v": 1, "state": "idle", "enabled": True, "bridge": BRIDGE, "adapter": "octo\u0000", "ts": now}
    offline_hub._handle(fake_message(protocol.topic_status(LAB, MACHINE), json.dumps(status).encode()))
    assert offline_hub.hub_stats["malformed_by_reason"] == {INVALID: 1}
    assert offline_hub.hub_stats.get("processing_failed", 0) == 0


def test_a_machine_cannot_have_more_reading_names_than_the_limit(machine, offline_hub, tmp_path):
    topic = protocol.topic_telemetry(LAB, MACHINE)
    sid = new_sid()
    names = [f"sensor_{i:03d}" for i in range(protocol.MAX_READING_NAMES + 36)]
    for seq, name in enumerate(names, start=1):
        msg = protocol.Telemetry(ts=protocol.now_ms(), sid=sid, seq=seq, values={name: 1.0, "power_w": 2.0})
        offline_hub._handle(fake_message(topic, protocol.encode(msg)))
    stats = offline_hub.hub_stats
    # power_w plus the first 63 sensors make 64 names; the other 36 sensors are left out, each counted.
    assert stats["reading_names_refused"] == 37
    assert stats["telemetry"] == len(names) and stats.get("malformed", 0) == 0
    lines = offline_hub._batch.lines
    assert len(lines) == len(names)  # every message kept its power_w
    assert "sensor_062=" in lines[62] and "sensor_063" not in "".join(lines)
    offline_hub._apply_readings()
    live = MachineStatus.objects.get(machine=machine).last_reading
    assert len(live) == protocol.MAX_READING_NAMES

    # A restarted hub starts from the machine's live readings: no new allowance.
    restarted = Hub(
        mqtt_url="mqtt://127.0.0.1:1",
        store=offline_hub.store,
        spool=Spool(tmp_path / "spool-2.sqlite3"),
        client_id="hub-hostile-2",
    )
    restarted.index.reload()
    msg = protocol.Telemetry(
        ts=protocol.now_ms(), sid=sid, seq=999, values={"brand_new": 1.0, "sensor_000": 3.0}
    )
    restarted._handle(fake_message(topic, protocol.encode(msg)))
    assert restarted.hub_stats["reading_names_refused"] == 1
    assert "brand_new" not in restarted._batch.lines[0] and "sensor_000=3" in restarted._batch.lines[0]
    restarted.spool.close()


def test_repeated_refusals_of_one_machine_are_logged_once_per_interval(machine, offline_hub, caplog):
    topic = protocol.topic_telemetry(LAB, MACHINE)
    other = protocol.topic_telemetry(LAB, "ghost")
    for _ in range(200):
        offline_hub._handle(fake_message(topic, b"not json"))
        offline_hub._handle(fake_message(other, b"not json"))
    refused = [r for r in caplog.records if "refused message" in r.getMessage()]
    assert len(refused) == 2  # one for prusa-1, one for the ghost: both bad_json, two machines
    assert offline_hub.hub_stats["malformed"] == 400
    assert offline_hub.logs.suppressed == 398


def test_one_bad_line_never_loses_other_machines_points(machine, broker, influx, publisher, tmp_path):
    """InfluxDB refuses one machine's line (a field type conflict); the batch's other points are kept."""
    other = make_machine(machine.lab, slug="laser-1", bridge=BRIDGE)
    now = protocol.now_ms()
    # Someone wrote "mood" as a string into this week's shard: every float "mood" now conflicts.
    store_for(influx).write_lines([f'telemetry,lab=elsewhere mood="grumpy" {now - 5000}'])
    sid = new_sid()
    with hub_thread(broker, influx, tmp_path, batch_interval=1.0) as hub:
        for seq in range(1, 101):
            values = {"power_w": float(seq)}
            if seq == 50:
                values["mood"] = 1.0
            publisher.message(
                protocol.Telemetry(ts=now - seq, sid=sid, seq=seq, values=values), LAB, MACHINE, wait=False
            )
            publisher.message(
                protocol.Telemetry(ts=now - seq, sid=sid, seq=seq, values={"power_w": float(seq)}),
                LAB,
                other.slug,
                wait=False,
            )
        wait_until(lambda: hub.hub_stats.get("acked", 0) >= 200, what="200 messages acknowledged")
        stats = hub.hub_stats
        spool = hub.spool
        assert spool.rejected() == 1
    assert stats["points_rejected"] == 1
    assert influx.count(f'SELECT count("power_w") FROM "telemetry" WHERE machine = \'{other.slug}\'') == 100  # noqa: S608
    assert influx.count(f'SELECT count("power_w") FROM "telemetry" WHERE machine = \'{MACHINE}\'') == 99  # noqa: S608
    assert stats.get("influx_write_errors", 0) == 0


def test_the_corpus_is_the_same_every_run():
    first = [(c.topic, c.payload) for c in Corpus(now=1_790_000_000_000).cases(300)]
    again = [(c.topic, c.payload) for c in Corpus(now=1_790_000_000_000).cases(300)]
    assert first == again
