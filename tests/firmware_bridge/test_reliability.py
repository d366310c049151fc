"""Nothing lost when the network fails (issue 3, point 9).

Against a private Mosquitto with persistence on:

* the broker is restarted (SIGTERM) in the middle of a telemetry stream;
* the bridge process is killed with SIGKILL mid-stream and started again.

In both, after de-duplication by (sid, seq), every ``seq`` from 1 to the
spool's last one arrives, and none twice.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest

from firmware_bridge import protocol
from firmware_bridge.bridge import Bridge
from firmware_bridge.config import load
from tests.firmware_bridge.conftest import BridgeProcess, Collector, wait_until, write_config
from tests.support.mosquitto import Mosquitto

pytestmark = pytest.mark.slow

LAB = "rel-lab"
MACHINES = ("m-1", "m-2", "m-3")


def assert_complete(collector: Collector, machine: str, last_seq: int, sid: str) -> None:
    """Every seq 1..last_seq of ``sid`` arrived; none is missing, none is unknown."""
    got = collector.seqs(LAB, machine)
    assert {s for s, _ in got} == {sid}, f"{machine}: unexpected sids {set(s for s, _ in got)}"
    unique = sorted({q for _, q in got})
    assert unique == list(range(1, last_seq + 1)), (
        f"{machine}: missing {sorted(set(range(1, last_seq + 1)) - set(unique))[:20]}"
    )


def spool_state(spool: Path) -> tuple[str, dict[str, int], int]:
    """(sid, last seq per machine, pending rows), read from another connection (WAL allows it)."""
    db = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=30)
    try:
        sid = db.execute("SELECT value FROM meta WHERE key='sid'").fetchone()[0]
        seqs = {k.split("/", 1)[1]: s for k, s in db.execute("SELECT key, last_seq FROM machines")}
        pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    return sid, seqs, pending


def counter_machines(limit: int, interval_s: float) -> list[dict]:
    return [
        {
            "lab": LAB,
            "machine": m,
            "adapter": "counter",
            "options": {"interval_s": interval_s, "limit": limit},
        }
        for m in MACHINES
    ]


def test_broker_restart_mid_stream_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    limit = 400
    cfg = load(write_config(tmp_path / "bridge.toml", mosquitto, counter_machines(limit, 0.01)))
    bridge = Bridge(cfg)
    bridge.start()
    try:
        # Mid-stream: some messages arrived, many more are still to come.
        wait_until(lambda: len(collector.seqs(LAB, "m-1")) >= 50, what="the stream to start")
        assert bridge.spool.last_seq(f"{LAB}/m-1") < limit
        mosquitto.stop(signal.SIGTERM)
        # While the broker is away the bridge keeps reading and spools.
        before = bridge.spool.pending()
        wait_until(lambda: bridge.spool.pending() >= before + 30, what="the spool to grow while offline")
        mosquitto.start()
        for m in MACHINES:
            # `limit` readings plus the job events, all on one seq counter.
            wait_until(lambda m=m: bridge.spool.last_seq(f"{LAB}/{m}") > limit, what=f"{m} to finish")
        wait_until(lambda: bridge.wait_idle(0.1), what="the spool to drain")
        for m in MACHINES:
            # Every seq, the job events' too: they may reach the collector after the last reading.
            last = bridge.spool.last_seq(f"{LAB}/{m}")
            wait_until(
                lambda m=m, last=last: len({q for _, q in collector.seqs(LAB, m)}) >= last,
                what=f"all of {m}'s messages at the collector",
            )
            assert_complete(collector, m, last, bridge.spool.sid)
        # Retained state was re-published after the reconnect.
        online = [m for _, m in collector.of_kind(protocol.ONLINE)]
        assert online and online[-1].online is True
        assert len([s for _, s in collector.of_kind(protocol.STATUS, LAB, "m-1")]) >= 2
    finally:
        bridge.stop()


def test_bridge_killed_and_restarted_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, collector: Collector
) -> None:
    limit = 300
    config = write_config(tmp_path / "bridge.toml", mosquitto, counter_machines(limit, 0.01))
    spool = tmp_path / "spool.sqlite3"
    proc = BridgeProcess(config, tmp_path / "bridge.log")
    proc.start()
    try:
        wait_until(lambda: len(collector.seqs(LAB, "m-2")) >= 40 or not proc.alive(), what="the stream")
        assert proc.alive(), proc.log()
        assert proc.kill(signal.SIGKILL) == -signal.SIGKILL
        sid, seqs_at_kill, _ = spool_state(spool)
        assert all(seqs_at_kill.get(m, 0) < limit for m in MACHINES), seqs_at_kill
        # Readings stop after `limit` polls; the last seq may still move by the job events.
        # The broker publishes the Last Will: the bridge is offline.
        wait_until(
            lambda: (last := collector.last(protocol.ONLINE)) is not None and last.online is False,
            what="the Last Will",
        )
        proc = BridgeProcess(config, tmp_path / "bridge.log")
        proc.start()
        # After the restart each counter emits `limit` more readings: wait until they are all spooled.
        for m in MACHINES:
            wait_until(
                lambda m=m: spool_state(spool)[1].get(m, 0) > seqs_at_kill[m] + limit or not proc.alive(),
                what=f"{m} to finish",
            )
        assert proc.alive(), proc.log()
        wait_until(lambda: spool_state(spool)[2] == 0, what="the spool to drain")
        sid_after, seqs, _ = spool_state(spool)
        assert sid_after == sid, "the spool (and its sid) must survive a restart"
        for m in MACHINES:
            wait_until(
                lambda m=m: len({q for _, q in collector.seqs(LAB, m)}) >= seqs[m],
                what=f"all of {m}'s telemetry at the collector",
            )
            assert_complete(collector, m, seqs[m], sid)
        wait_until(
            lambda: (last := collector.last(protocol.ONLINE)) is not None and last.online is True,
            what="online again",
        )
    finally:
        if proc.alive():
            proc.kill(signal.SIGTERM)


def test_duplicates_are_only_replays(tmp_path: Path, mosquitto: Mosquitto, collector: Collector) -> None:
    """A replayed message is byte-for-byte the original: same ts, same values, same seq."""
    config = write_config(tmp_path / "bridge.toml", mosquitto, counter_machines(60, 0.01))
    proc = BridgeProcess(config, tmp_path / "bridge.log")
    proc.start()
    try:
        wait_until(lambda: len(collector.seqs(LAB, "m-1")) >= 20 or not proc.alive(), what="the stream")
        proc.kill(signal.SIGKILL)
        at_kill = spool_state(tmp_path / "spool.sqlite3")[1]["m-1"]
        proc = BridgeProcess(config, tmp_path / "bridge.log")
        proc.start()

        def second_run_done() -> bool:
            _, seqs, pending = spool_state(tmp_path / "spool.sqlite3")
            return pending == 0 and seqs.get("m-1", 0) > at_kill + 60

        wait_until(second_run_done, what="the second run")
        assert proc.alive(), proc.log()
        last = spool_state(tmp_path / "spool.sqlite3")[1]["m-1"]
        wait_until(
            lambda: len({q for _, q in collector.seqs(LAB, "m-1")}) >= last, what="all at the collector"
        )
        seen: dict[tuple[str, int], bytes] = {}
        for topic, payload, _ in collector.snapshot():
            if topic != protocol.topic_telemetry(LAB, "m-1"):
                continue
            msg = protocol.decode_telemetry(payload)
            key = (msg.sid, msg.seq)
            if key in seen:
                assert seen[key] == payload, "a replay must carry the original ts and values"
            seen[key] = payload
        assert len(seen) > 60
    finally:
        if proc.alive():
            proc.kill(signal.SIGTERM)
