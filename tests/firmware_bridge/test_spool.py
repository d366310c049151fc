"""The SQLite spool: sid for life, seq never repeats, bounded with counted drops, state that survives."""

from __future__ import annotations

import multiprocessing
import os
import signal
import uuid
from pathlib import Path

import pytest

from firmware_bridge import protocol
from firmware_bridge.spool import CommandResult, Spool, SpoolError

M = "lab/m"


def telemetry(value: float):
    return lambda sid, seq: protocol.encode(
        protocol.Telemetry(ts=1000 + seq, sid=sid, seq=seq, values={"x": value})
    )


def test_sid_is_made_once_and_kept(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    sid = s.sid
    uuid.UUID(sid)
    s.close()
    assert Spool(tmp_path / "s.db").sid == sid
    assert Spool(tmp_path / "other.db").sid != sid


def test_seq_per_machine_and_rows_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    for i in range(3):
        s.append(M, "t/a", telemetry(i))
        s.append("lab/n", "t/b", telemetry(i))
    rows = s.fetch_after(0, 100)
    assert [protocol.decode_telemetry(r.payload).seq for r in rows if r.machine == M] == [1, 2, 3]
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert s.pending() == 6 and s.last_seq(M) == 3
    assert s.delete([rows[0].id, rows[1].id, 999]) == 2
    assert s.pending() == 4
    assert [r.id for r in s.fetch_after(rows[2].id, 100)] == [r.id for r in rows[3:]]
    s.close()
    s = Spool(tmp_path / "s.db")
    assert s.pending() == 4 and s.last_seq(M) == 3
    s.append(M, "t/a", telemetry(9))
    assert protocol.decode_telemetry(s.fetch_after(0, 100)[-1].payload).seq == 4


def test_failed_build_uses_no_seq(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    with pytest.raises(protocol.ProtocolError):
        s.append(
            M, "t", lambda sid, seq: protocol.encode(protocol.Telemetry(ts=1, sid=sid, seq=seq, values={}))
        )
    assert s.pending() == 0 and s.last_seq(M) == 0
    s.append(M, "t", telemetry(1))
    assert s.last_seq(M) == 1


def test_full_spool_drops_oldest_and_counts(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db", max_messages=100)
    for i in range(130):
        s.append(M if i % 2 == 0 else "lab/n", "t", telemetry(i))
    assert s.pending() == 100
    assert s.dropped() == 30 and s.dropped(M) == 15 and s.dropped("lab/n") == 15
    values = [protocol.decode_telemetry(r.payload).values["x"] for r in s.fetch_after(0, 1000)]
    assert values == list(range(30, 130))  # the oldest went first
    s.close()
    s = Spool(tmp_path / "s.db", max_messages=100)
    assert s.dropped() == 30  # persisted


def test_append_many(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db", max_messages=1000)
    s.append(M, "t", telemetry(0))
    assert s.append_many((M, "t", telemetry(i)) for i in range(50)) == 50
    assert s.last_seq(M) == 51 and s.pending() == 51


def test_interlock_and_commands_persist(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    assert s.get_enabled(M) is None
    s.set_enabled(M, True)
    s.set_enabled(M, False)
    s.put_command(M, "c1", CommandResult(False, "expired", "late"))
    s.put_command(M, "c1", CommandResult(True))  # first result wins
    s.close()
    s = Spool(tmp_path / "s.db")
    assert s.get_enabled(M) is False
    assert s.get_command(M, "c1") == CommandResult(False, "expired", "late")
    assert s.get_command("lab/other", "c1") is None
    assert s.prune_commands(3600) == 0
    assert s.prune_commands(-1) == 1


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpoolError, match="cannot open spool"):
        Spool(path)


def _writer(path: str, n: int, ready) -> None:  # runs in a child process
    s = Spool(path)
    for i in range(n):
        s.append(M, "t", telemetry(i))
        if i == 20:
            ready.set()
    ready.set()
    while True:
        s.append(M, "t", telemetry(-1))


def test_kill_9_keeps_committed_rows_and_seq(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_writer, args=(str(tmp_path / "s.db"), 10**9, ready))
    proc.start()
    assert ready.wait(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    s = Spool(tmp_path / "s.db")
    rows = s.fetch_after(0, 10**6)
    seqs = [protocol.decode_telemetry(r.payload).seq for r in rows]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 21
    assert s.last_seq(M) == len(seqs)  # the counter matches what was stored: no seq can repeat
