"""A fault report leaves the machine's card on the floor board as soon as it closes, whichever way.

The board listens on the in-memory channel layer (as in ``test_consumers``); closing the report pushes
``{"type": "booking"}`` for its machine, and the consumer sends the manager the card read again.
"""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from devices import care, fault_reports
from devices.models import Alert, ServiceInterval
from devices.routing import websocket_urlpatterns
from fablab.booking import out_of_service
from fablab.labs.models import MaintenanceWindow
from tests.devices.board_fixtures import in_memory_layer, make_board  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


def resolve(board, alert: Alert) -> None:
    fault_reports.resolve(alert, board["manager"])


def record_service(board, alert: Alert) -> None:
    interval = ServiceInterval.objects.create(
        machine=board["printer"], name="Nozzle", every_hours=100, counted_from=alert.raised_at
    )
    care.record_service(interval, board["manager"])


def back_in_service(board, alert: Alert) -> None:
    window = MaintenanceWindow.objects.create(
        machine=board["printer"], start=alert.raised_at, end=timezone.now() + dt.timedelta(hours=2)
    )
    out_of_service.back_in_service(window=window, by=board["manager"])


def fault_kinds(card: dict) -> list[str]:
    return [a["kind"] for a in card["alerts"] if a["kind"] == Alert.Kind.FAULT_REPORTED]


@pytest.mark.parametrize("close", [resolve, record_service, back_in_service])
def test_the_card_drops_the_fault_report_when_it_closes(in_memory_layer, settings, close):  # noqa: F811
    settings.INFLUX_DATABASE = ""  # no laser hours are asked of a store
    board = make_board()
    alert = Alert.objects.create(
        machine=board["printer"],
        kind=Alert.Kind.FAULT_REPORTED,
        message="#1 Karim Other: nozzle clogged",
        raised_at=timezone.now() - dt.timedelta(minutes=5),
    )

    async def scenario():
        comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/labs/board-lab/")
        comm.scope["user"] = board["manager"]
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert connected
        snapshot = await comm.receive_json_from(timeout=TIMEOUT)
        await database_sync_to_async(close)(board, alert)
        card = await comm.receive_json_from(timeout=TIMEOUT)
        await comm.disconnect()
        return snapshot, card

    snapshot, card = async_to_sync(scenario)()
    printer = next(m for m in snapshot["machines"] if m["machine"] == "printer-1")
    assert fault_kinds(printer) == ["fault_reported"]
    assert card["machine"] == "printer-1" and fault_kinds(card) == []
