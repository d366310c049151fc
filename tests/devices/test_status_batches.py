"""``devices.status.apply_statuses``: a batch does what applying its statuses one by one in ``ts`` order does."""

from __future__ import annotations

import time

import pytest

from devices import live, machines
from devices import status as live_status
from devices.models import Alert, MachineStatus, StateChange, UsageSession
from firmware_bridge import protocol
from tests.devices.conftest import make_machine
from tests.factories import LabFactory

pytestmark = pytest.mark.django_db

# A day ago in whole seconds: inside the hub's accepted window (MAX_AGE_MS) on any date.
T0 = (int(time.time()) - 86_400) * 1000


def status(state: str, ts: int, job: str | None = None, progress: float = 0.0) -> protocol.Status:
    return protocol.Status(
        state=state,
        enabled=True,
        bridge="bridge-1",
        adapter="octoprint",
        ts=ts,
        job=protocol.Job(id=job, name=f"{job}.gcode", started_ts=ts, progress_pct=progress) if job else None,
        error=protocol.MachineError(code="E1", message="jam") if state == protocol.ERROR else None,
    )


#: Out of order, with a duplicate ts: sorted, the first of a ts applied, every change recorded.
STATUSES = [
    status(protocol.RUNNING, T0, "j1"),
    status(protocol.IDLE, T0 + 3000),
    status(protocol.RUNNING, T0 + 1000, "j1", 10.0),
    status(protocol.RUNNING, T0 + 1000, "j1", 99.0),
    status(protocol.ERROR, T0 + 2000),
    status(protocol.RUNNING, T0 + 4000, "j2"),
    status(protocol.OFFLINE, T0 + 5000),
    status(protocol.RUNNING, T0 + 6000, "j2", 50.0),
]


def history(machine) -> dict:
    return {
        "changes": list(
            StateChange.objects.filter(machine=machine).values_list("previous_state", "state", "at")
        ),
        "sessions": list(
            UsageSession.objects.filter(machine=machine).values_list(
                "job_id", "started_at", "ended_at", "outcome"
            )
        ),
        "alerts": list(
            Alert.objects.filter(machine=machine)
            .order_by("raised_at")
            .values_list("kind", "raised_at", "cleared_at")
        ),
        "live": MachineStatus.objects.filter(machine=machine).values_list(
            "state", "since", "job_id", "progress_pct", "status_ts", "online", "error_code"
        )[0],
    }


def test_a_batch_does_what_its_statuses_do_one_by_one(monkeypatch):
    lab = LabFactory(slug="bxl-centre")
    one, batched, other = (make_machine(lab, slug=s) for s in ("one-by-one", "batched", "other"))
    index = machines.MachineIndex()
    index.reload()
    pushed = []
    monkeypatch.setattr(
        live,
        "push_status",
        lambda st, ts=None, alerts=None: pushed.append((st.machine.slug, st.state, ts, alerts)),
    )

    for msg in sorted(STATUSES, key=lambda m: m.ts):
        live_status.apply_status(index.get("bxl-centre", "one-by-one"), msg)
    by_one = [p[1:] for p in pushed]
    pushed.clear()
    info, other_info = index.get("bxl-centre", "batched"), index.get("bxl-centre", "other")
    applied = live_status.apply_statuses(
        [(info, m) for m in STATUSES] + [(other_info, status(protocol.IDLE, T0))]
    )

    assert history(batched) == history(one)
    expected = [
        protocol.RUNNING,
        protocol.ERROR,
        protocol.IDLE,
        protocol.RUNNING,
        protocol.OFFLINE,
        protocol.RUNNING,
    ]
    assert [s for _p, s, _at in history(batched)["changes"]] == expected
    assert history(batched)["changes"][0][0] == ""  # the first status of a machine never seen
    # One frame per status applied, in ts order, each showing the machine as that status left it.
    mine = [p[1:] for p in pushed if p[0] == "batched"]
    assert mine == by_one
    assert [ts for _s, ts, _a in mine] == [
        T0,
        T0 + 1000,
        T0 + 2000,
        T0 + 3000,
        T0 + 4000,
        T0 + 5000,
        T0 + 6000,
    ]
    assert mine[2][2] == [{"kind": "error"}] and mine[3][2] == []
    assert mine[5][2] == [{"kind": "offline"}] and mine[6][2] == []
    assert [(s.machine.slug, s.status_ts) for s in applied].count(("other", T0)) == 1
    assert len(applied) == 8
    assert StateChange.objects.filter(machine=other).count() == 1

    # Nothing newer: nothing applied, nothing pushed, nothing recorded.
    pushed.clear()
    before = history(batched)
    assert live_status.apply_statuses([(info, status(protocol.IDLE, T0 + 6000))]) == []  # the same ts
    assert live_status.apply_statuses([(info, m) for m in STATUSES]) == []
    assert pushed == [] and history(batched) == before
