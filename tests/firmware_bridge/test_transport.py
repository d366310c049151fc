"""The MQTT transport: retained online/status, Last Will, credentials, refused publishes, re-subscription."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from firmware_bridge import protocol
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.firmware_bridge.conftest import Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto

LAB = "tr-lab"


def machines(interval_s: float = 0.05, limit: int = 0) -> list[dict]:
    return [
        {
            "lab": LAB,
            "machine": "m-1",
            "adapter": "counter",
            "options": {"interval_s": interval_s, "limit": limit},
        }
    ]


def test_online_status_retained_and_clean_stop(tmp_path: Path, mosquitto: Mosquitto) -> None:
    b = Bridge(load(write_config(tmp_path / "bridge.toml", mosquitto, machines(), bridge_id="tr-bridge")))
    b.start()
    try:
        assert b.transport.wait_connected(60)
        wait_until(lambda: b.spool.last_seq(f"{LAB}/m-1") > 3, what="telemetry")
        # A subscriber arriving later still gets the retained online flag and status.
        late = Collector(mosquitto).start()
        try:
            online = wait_until(lambda: late.last(protocol.ONLINE), what="retained online")
            assert online.online is True and online.ts > 0 and online.spool_dropped == 0
            status = wait_until(lambda: late.last(protocol.STATUS, LAB, "m-1"), what="retained status")
            assert (status.bridge, status.adapter) == ("tr-bridge", "counter")
            assert any(r for t, _, r in late.snapshot() if t == protocol.topic_status(LAB, "m-1"))
        finally:
            late.stop()
    finally:
        b.stop()
    after = Collector(mosquitto).start()
    try:
        assert wait_until(lambda: after.last(protocol.ONLINE), what="online after stop").online is False
        assert (
            wait_until(lambda: after.last(protocol.STATUS, LAB, "m-1"), what="status").state
            in protocol.STATES
        )
    finally:
        after.stop()


def test_credentials(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mq", passwords={"bridge": "s3cret:/@"})
    broker.start()
    try:
        good = write_config(tmp_path / "good.toml", broker, machines())
        text = good.read_text().replace(broker.url(), broker.url("bridge", "s3cret:/@"))
        good.write_text(text)
        b = Bridge(load(good))
        b.start()
        try:
            assert b.transport.wait_connected(60)
        finally:
            b.stop()
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace("s3cret", "wrong").replace("spool.sqlite3", "spool2.sqlite3"))
        b = Bridge(load(bad))
        b.start()
        try:
            wait_until(lambda: b.transport.last_refusal, what="the broker to refuse")
            assert "authorized" in b.transport.last_refusal.lower()
            assert not b.transport.connected
            wait_until(lambda: b.spool.pending() > 0, what="spooling while refused")
        finally:
            b.stop()
    finally:
        broker.stop()


def test_refused_publish_stays_spooled_until_allowed(tmp_path: Path) -> None:
    """A PUBACK with a failure reason (MQTT 5 reason 135) never deletes the message."""
    acl_deny = (
        "user bridge\n"
        "topic write fablab/v1/_bridges/#\n"
        f"topic readwrite fablab/v1/{LAB}/m-1/status\n"
        f"topic read fablab/v1/{LAB}/m-1/cmd\n"
        f"topic write fablab/v1/{LAB}/m-1/cmd/ack\n"
        "user reader\n"
        "topic read fablab/v1/#\n"
        f"topic write fablab/v1/{LAB}/m-1/cmd\n"
    )
    broker = Mosquitto(tmp_path / "mq", passwords={"bridge": "b", "reader": "r"}, acl=acl_deny)
    broker.start()
    try:
        config = write_config(tmp_path / "bridge.toml", broker, machines(0.05, limit=20))
        config.write_text(config.read_text().replace(broker.url(), broker.url("bridge", "b")))
        collector = Collector(broker, user="reader", password="r").start(probe=False)
        wait_until(lambda: collector.client.is_connected(), what="the reader")
        b = Bridge(load(config))
        b.start()
        try:
            wait_until(lambda: b.spool.last_seq(f"{LAB}/m-1") > 20, what="the counter to finish")
            wait_until(lambda: b.pump.refused, what="refused messages")
            assert b.spool.pending() > 20  # refused: still on disk
            assert collector.seqs(LAB, "m-1") == []
            # Mosquitto 2.0.11 also drops an MQTT 5 client's connection after refusing its publish, so
            # the bridge keeps reconnecting; its session (and subscription) lives on: a command sent
            # now is received and acknowledged.
            now = protocol.now_ms()
            command = {"v": 1, "id": "during-refusal", "action": "pause", "ts": now, "expires": now + 600_000}
            collector.publish(protocol.topic_cmd(LAB, "m-1"), command)
            # The administrator fixes the ACL; Mosquitto reloads it on SIGHUP.
            (broker.workdir / "acl").write_text(acl_deny + f"user bridge\ntopic write fablab/v1/{LAB}/#\n")
            broker.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: b.spool.pending() == 0, what="the refused messages to be delivered")
            last = b.spool.last_seq(f"{LAB}/m-1")
            wait_until(lambda: len({q for _, q in collector.seqs(LAB, "m-1")}) == last, what="all messages")
            ack = wait_until(
                lambda: next(
                    (
                        a
                        for _, a in collector.of_kind(protocol.CMD_ACK, LAB, "m-1")
                        if a.id == "during-refusal"
                    ),
                    None,
                ),
                what="the ack of the command sent while refused",
            )
            assert ack.error is None or ack.error.code != "expired"
        finally:
            b.stop()
            collector.stop()
    finally:
        broker.stop()


def test_plug_subscriptions_survive_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    b = Bridge(load(write_config(tmp_path / "bridge.toml", mosquitto, machines(limit=1))))
    got: list[tuple[str, bytes]] = []
    b.transport.subscribe("tele/plug_1/SENSOR", lambda t, p: got.append((t, p)))
    b.transport.subscribe("tele/plug_1/boom", lambda t, p: 1 / 0)  # a failing handler is contained
    b.start()
    try:
        assert b.transport.wait_connected(60)
        pub = Collector(mosquitto).start()
        pub.publish("tele/plug_1/boom", b"x")
        pub.publish("tele/plug_1/SENSOR", b"one")
        wait_until(lambda: got, what="the first plug message")
        pub.stop()
        mosquitto.stop(signal.SIGTERM)
        wait_until(lambda: not b.transport.connected, what="disconnect")
        mosquitto.start()
        assert b.transport.wait_connected(60)
        pub = Collector(mosquitto).start()
        # Subscribed again after the restart (it may already be in the restored session too).
        wait_until(
            lambda: (pub.publish("tele/plug_1/SENSOR", b"two"), any(p == b"two" for _, p in got))[1],
            what="a plug message after the restart",
        )
        pub.stop()
        b.machines[f"{LAB}/m-1"].publish("cmnd/plug_1/POWER", "OFF")  # the sink's publish for plugs
    finally:
        b.stop()


@pytest.mark.parametrize("window", [1, 5])
def test_small_publish_window_keeps_order(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector, window: int
) -> None:
    config = write_config(
        tmp_path / "bridge.toml",
        mosquitto,
        machines(0.01, limit=60),
        extra_bridge=f"publish_window = {window}",
    )
    b = Bridge(load(config))
    b.start()
    try:
        wait_until(lambda: b.spool.last_seq(f"{LAB}/m-1") > 60 and b.spool.pending() == 0, what="the stream")
        # The broker's PUBACK to the bridge can come before its delivery to the collector.
        last = b.spool.last_seq(f"{LAB}/m-1")
        wait_until(
            lambda: len({q for _, q in collector.seqs(LAB, "m-1")}) >= last, what="all at the collector"
        )
        seqs = [q for _, q in collector.seqs(LAB, "m-1")]
        telemetry = [m.seq for _, m in collector.of_kind(protocol.TELEMETRY, LAB, "m-1")]
        assert telemetry == sorted(telemetry) and len(set(seqs)) == last
    finally:
        b.stop()


def test_full_spool_drops_oldest_and_reports_it(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    config = write_config(
        tmp_path / "bridge.toml", mosquitto, machines(0.01), extra_bridge="spool_max_messages = 100"
    )
    b = Bridge(load(config))
    b.start()
    try:
        assert b.transport.wait_connected(60)
        mosquitto.stop(signal.SIGTERM)
        wait_until(lambda: b.spool.dropped(f"{LAB}/m-1") > 0, what="the full spool to drop")
        assert b.spool.pending() <= 100
        mosquitto.start()
        status = wait_until(
            lambda: (s := collector.last(protocol.STATUS, LAB, "m-1")) and s.spool_dropped > 0 and s,
            what="spool_dropped in status",
        )
        assert status.spool_dropped <= b.spool.dropped(f"{LAB}/m-1")
        online = wait_until(
            lambda: (o := collector.last(protocol.ONLINE)) and o.online and o.spool_dropped and o,
            what="spool_dropped in online",
        )
        assert online.spool_dropped > 0
    finally:
        b.stop()


def make_tls_files(d: Path, name: str) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.crt, server.key)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (d / f"{name}{s}" for s in ("-ca.key", "-ca.pem", ".key", ".csr", ".crt"))
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
        "-days",
        "2",
        "-subj",
        f"/CN={name} test CA",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(csr),
        "-subj",
        "/CN=127.0.0.1",
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return ca, crt, key


def test_tls_with_ca_file(tmp_path: Path) -> None:
    from tests.support.mosquitto import free_port

    ca, crt, key = make_tls_files(tmp_path / "tls", "broker")
    other_ca, _, _ = make_tls_files(tmp_path / "tls", "other")
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "mq",
        extra=f"listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n",
    )
    broker.start()
    try:
        config = write_config(tmp_path / "bridge.toml", broker, machines(limit=3))
        good = config.read_text().replace(broker.url(), f"mqtts://127.0.0.1:{tls_port}")
        good = good.replace("[mqtt]\n", f'[mqtt]\nca_file = "{ca}"\n')
        config.write_text(good)
        b = Bridge(load(config))
        b.start()
        try:
            assert b.transport.wait_connected(60)
            wait_until(
                lambda: b.spool.last_seq(f"{LAB}/m-1") >= 3 and b.spool.pending() == 0, what="delivery"
            )
        finally:
            b.stop()
        # A broker whose certificate the configured CA did not sign is never trusted.
        config.write_text(good.replace(str(ca), str(other_ca)).replace("spool.sqlite3", "spool2.sqlite3"))
        b = Bridge(load(config))
        b.start()
        try:
            wait_until(lambda: b.transport._failures >= 1, what="the TLS handshake to fail")
            assert not b.transport.connected
        finally:
            b.stop()
    finally:
        broker.stop()


def test_one_refused_machine_does_not_stall_the_others(tmp_path: Path) -> None:
    """Mosquitto 2.0.11 drops the connection after refusing a publish: the refused topics are held back."""
    acl = (
        "user bridge\n"
        "topic write fablab/v1/_bridges/#\n"
        f"topic write fablab/v1/{LAB}/m-1/#\n"
        f"topic read fablab/v1/{LAB}/m-1/cmd\n"
        f"topic write fablab/v1/{LAB}/m-2/status\n"  # m-2 is not (yet) allowed its telemetry and events
        "user reader\n"
        "topic read fablab/v1/#\n"
    )
    broker = Mosquitto(tmp_path / "mq", passwords={"bridge": "b", "reader": "r"}, acl=acl)
    broker.start()
    try:
        two = [{**machines(0.1, limit=150)[0], "machine": m} for m in ("m-1", "m-2")]
        config = write_config(tmp_path / "bridge.toml", broker, two)
        config.write_text(config.read_text().replace(broker.url(), broker.url("bridge", "b")))
        collector = Collector(broker, user="reader", password="r").start(probe=False)
        wait_until(lambda: collector.client.is_connected(), what="the reader")
        b = Bridge(load(config))
        b.start()
        try:
            wait_until(lambda: b.spool.last_seq(f"{LAB}/m-1") > 150, what="m-1's counter to finish")
            last = b.spool.last_seq(f"{LAB}/m-1")
            wait_until(
                lambda: len({q for _, q in collector.seqs(LAB, "m-1")}) == last,
                timeout=120,
                what="every message of the allowed machine while the other is refused",
            )
            assert collector.seqs(LAB, "m-2") == []
            assert b.transport.quarantined or b.pump.refused
            # The administrator allows m-2; its backlog follows, complete.
            (broker.workdir / "acl").write_text(acl + f"user bridge\ntopic write fablab/v1/{LAB}/m-2/#\n")
            broker.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: b.spool.pending() == 0, timeout=120, what="m-2's backlog to be delivered")
            last2 = b.spool.last_seq(f"{LAB}/m-2")
            wait_until(lambda: len({q for _, q in collector.seqs(LAB, "m-2")}) == last2, what="all of m-2")
        finally:
            b.stop()
            collector.stop()
    finally:
        broker.stop()


def test_a_filter_subscribed_while_connecting_is_not_missed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """An adapter subscribing just as the connection comes up (setup races the connect) still gets its messages."""
    import threading

    from firmware_bridge.transport import Transport

    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, machines()))
    t = Transport(cfg.mqtt, "race-bridge")
    got: list[bytes] = []
    t.subscribe("race/a", lambda topic, payload: None)
    original = t.client.subscribe
    racer: list[threading.Thread] = []

    def subscribe_during_connect(*args: object, **kwargs: object) -> object:
        if not racer:  # the connect's own subscribe: another thread adds a filter right now
            racer.append(threading.Thread(target=t.subscribe, args=("race/b", lambda _t, p: got.append(p))))
            racer[0].start()
            racer[0].join(0.5)
        return original(*args, **kwargs)

    t.client.subscribe = subscribe_during_connect  # type: ignore[method-assign]
    t.start()
    try:
        assert t.wait_connected(60)
        wait_until(lambda: racer and not racer[0].is_alive(), what="the racing subscribe")
        collector = Collector(mosquitto).start()
        try:
            wait_until(
                lambda: collector.publish("race/b", b"hello") or got, timeout=30, what="a message on race/b"
            )
        finally:
            collector.stop()
    finally:
        t.stop()


def test_the_broker_connection_sends_small_packets_at_once(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """TCP_NODELAY on the bridge's socket: a status is not held back for the broker's delayed ACK.

    paho-mqtt leaves Nagle's algorithm on; the transport turns it off for every connection,
    including the ones after a reconnect (``on_socket_open``).
    """
    import socket

    from firmware_bridge.transport import Transport

    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, machines()))
    t = Transport(cfg.mqtt, "nodelay-bridge")
    t.start()
    try:
        assert t.wait_connected(60)
        first = t.client.socket()
        assert first.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        mosquitto.stop()
        mosquitto.start()
        wait_until(lambda: t.client.socket() not in (None, first) and t.wait_connected(0), what="a reconnect")
        assert t.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        t.stop()
