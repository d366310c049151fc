"""At least once, end to end, with real servers: after an InfluxDB outage and a kill -9 of the hub,
InfluxDB holds every telemetry message exactly once (counted by machine and ts with InfluxQL).

The hub runs as ``manage.py run_hub`` in a subprocess on the test database.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from firmware_bridge import protocol
from tests.devices.conftest import WAIT_S, HubProcess, Publisher, make_machine, new_sid, wait_until
from tests.factories import LabFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

LAB = "bxl-centre"
MACHINES = ("prusa-1", "prusa-2", "laser-1")
# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000


class Stream:
    """Publishes ``n`` telemetry messages per machine, paced, in a thread; ts = T0 + seq ms (unique)."""

    def __init__(self, broker, n: int, rate_per_s: float = 600.0) -> None:
        self.publisher = Publisher(broker)
        self.n = n
        self.rate = rate_per_s
        self.sent = 0
        self.sid = new_sid()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        for seq in range(self.n):
            for machine in MACHINES:
                msg = protocol.Telemetry(
                    ts=T0 + seq, sid=self.sid, seq=seq, values={"power_w": seq, "energy_wh": seq / 10}
                )
                self.publisher.message(msg, LAB, machine, wait=False)
                self.sent += 1
            # Pace the stream so that the outages below fall in its middle.
            ahead = self.sent / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def wait_sent(self, count: int) -> None:
        wait_until(lambda: self.sent >= count, what=f"{count} messages published")

    def finish(self) -> None:
        self.thread.join(timeout=WAIT_S * 2)
        assert not self.thread.is_alive()
        # Every message reached the broker (PUBACK), so the broker owns it from here.
        wait_until(lambda: not self.publisher.client._out_messages, what="the publisher's PUBACKs")
        self.publisher.close()


def assert_exactly_once(influx, n: int) -> None:
    """Each machine has exactly the n points with ts T0..T0+n-1, once each."""
    per_machine = {
        s["tags"]["machine"]: int(s["values"][0][1])
        for s in influx.query(
            f'SELECT count("power_w") FROM "telemetry" WHERE time >= {T0}ms GROUP BY "machine"'  # noqa: S608
        )
    }
    assert per_machine == dict.fromkeys(MACHINES, n)
    for machine in MACHINES:
        rows = influx.query(
            f'SELECT "power_w" FROM "telemetry" WHERE "machine" = \'{machine}\' AND time >= {T0}ms'  # noqa: S608
        )[0]["values"]
        assert [t for t, _v in rows] == [T0 + i for i in range(n)]
        assert [v for _t, v in rows] == list(range(n))  # each point is its own message's


def wait_for_points(influx, n: int, hub: HubProcess | None = None) -> None:
    total = n * len(MACHINES)
    wait_until(
        lambda: (
            influx.running
            and influx.count(f'SELECT count("power_w") FROM "telemetry" WHERE time >= {T0}ms') >= total  # noqa: S608
        ),
        timeout=WAIT_S * 2,
        what=f"{total} points in InfluxDB" + (f"; hub log:\n{hub.log()[-3000:]}" if hub else ""),
    )


def make_machines() -> None:
    lab = LabFactory(slug=LAB)
    for slug in MACHINES:
        make_machine(lab, slug=slug, adapter="tasmota")


def test_influxdb_down_mid_stream_spools_then_drains(broker, influx, tmp_path):
    make_machines()
    hub = HubProcess(broker, influx, tmp_path / "hub", "hub-rel-1").start()
    try:
        n = 3000
        stream = Stream(broker, n).start()
        stream.wait_sent(n)  # a third of the stream
        influx.stop(signal.SIGKILL)
        wait_until(lambda: "spooling" in hub.log(), what="the hub to spool")
        stream.wait_sent(2 * n)
        influx.start()
        stream.finish()
        wait_for_points(influx, n, hub)
        wait_until(lambda: "points_drained" in hub.log(), what="the drain in the stats")
        assert_exactly_once(influx, n)
    finally:
        assert hub.stop() == 0, hub.log()[-3000:]
    log = hub.log()
    assert "InfluxDB unavailable, spooling" in log and "Traceback" not in log


def test_kill_9_mid_stream_and_a_restart_lose_nothing_and_duplicate_nothing(broker, influx, tmp_path):
    make_machines()
    hub = HubProcess(broker, influx, tmp_path / "hub", "hub-rel-2")
    hub.start()
    n = 4000
    stream = Stream(broker, n).start()
    try:
        stream.wait_sent(n)
        hub.stop(signal.SIGKILL)  # unacknowledged messages stay with the broker's session
        stream.wait_sent(2 * n)  # queued for the stopped hub's persistent session
        hub.start()
        stream.wait_sent(int(2.5 * n))
        assert hub.stop(signal.SIGTERM) == 0  # a clean stop: flush, ack, disconnect, no unsubscribe
        stream.wait_sent(int(2.8 * n))
        hub.start()
        stream.finish()
        wait_for_points(influx, n, hub)
        assert_exactly_once(influx, n)
    finally:
        hub.stop()
    assert "Traceback" not in hub.log()


@pytest.mark.parametrize("group", ["hub", None], ids=["shared", "plain"])
def test_the_hub_rides_out_a_broker_restart(broker, influx, tmp_path, group):
    """The hub reconnects and re-subscribes; its session and its queue survive the restart.

    Mosquitto 2.0.11 does not restore a session's *shared* subscriptions from its
    persistence file, so with ``$share`` the stream published after the restart is
    kept only once the hub has re-subscribed; plain subscriptions keep it at once.
    """
    from tests.devices.conftest import hub_thread

    make_machines()
    sid = new_sid()

    def publish(seqs) -> None:
        pub = Publisher(broker)
        for seq in seqs:
            msg = protocol.Telemetry(ts=T0 + seq, sid=sid, seq=seq, values={"power_w": seq})
            pub.message(msg, LAB, MACHINES[0], wait=False)
        wait_until(lambda: not pub.client._out_messages, what="PUBACKs")
        pub.close()

    with hub_thread(broker, influx, tmp_path, group=group) as hub:
        publish(range(100))
        wait_until(lambda: hub.hub_stats.get("acked", 0) >= 100, what="the first hundred acked")
        hub._subscribed.clear()
        broker.stop()
        broker.start()  # same port, persistent store: the hub's session survives
        if group is None:
            publish(range(100, 200))  # before the hub is back: queued for its session
        wait_until(hub._subscribed.is_set, what="the hub to re-subscribe")
        publish(range(200, 300))
        total = 200 if group else 300
        wait_until(
            lambda: influx.count('SELECT count("power_w") FROM "telemetry"') == total,
            what=f"{total} points after the broker restart",
        )
