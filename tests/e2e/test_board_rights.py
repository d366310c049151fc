"""The floor board in headless Chromium when rights change or a machine fails (board.js's side of it).

A lab manager removed while their board is open loses the names and the
command buttons without reloading; a maker's card explains a machine error
in words and never shows the bridge's message, which names internal
addresses. Real uvicorn, real Redis channel layer; statuses are pushed as
the hub pushes them (``devices.live.push_status``).
"""

from __future__ import annotations

import re

import pytest

from devices import consumers, live
from devices.models import MachineStatus
from tests.devices.board_fixtures import make_board, redis_layer, redis_server  # noqa: F401
from tests.e2e.test_board import WAIT_MS, AsgiServer, _log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LEAKY_MESSAGE = "OctoPrint at http://10.1.2.3:5000/api/job is unreachable: /dev/ttyUSB0"


def _open_board(browser, server, user):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    _log_in(context, server, user)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.url}/labs/board-lab/board/")
    expect(page.locator("#live-state")).to_have_attribute("data-state", "live")
    page.evaluate("window.__stillHere = true")
    return context, page


def test_a_removed_manager_loses_names_and_buttons_without_a_reload(redis_layer, browser, monkeypatch):  # noqa: F811
    from playwright.sync_api import expect

    board = make_board()
    monkeypatch.setattr(consumers, "RECHECK_EVERY_S", 0.2)
    with AsgiServer() as server:
        context, page = _open_board(browser, server, board["manager"])
        try:
            printer = page.locator("#machine-printer-1")
            expect(printer).to_contain_text("Karim Other")
            expect(printer.locator("form.commands")).to_have_count(1)
            board["lab"].managers.remove(board["manager"])
            expect(printer).not_to_contain_text("Karim Other")
            expect(page.locator("form.commands")).to_have_count(0)
            expect(printer).to_contain_text("a job")
            assert page.evaluate("window.__stillHere") is True
        finally:
            context.close()


def test_a_makers_card_explains_a_machine_error_without_the_bridges_message(redis_layer, browser):  # noqa: F811
    from playwright.sync_api import expect

    board = make_board()
    with AsgiServer() as server:
        maker_ctx, maker = _open_board(browser, server, board["maker_a"])
        manager_ctx, manager = _open_board(browser, server, board["manager"])
        try:
            status = MachineStatus.objects.select_related("machine__lab").get(machine__slug="printer-1")
            status.state = "error"
            status.error_code = "unreachable"
            status.error_message = LEAKY_MESSAGE
            status.status_ts += 1
            status.save()
            live.push_status(status)
            assert live.flush(timeout=30)
            badge = maker.locator("#machine-printer-1 .alert-error")
            expect(badge).to_have_text("The machine's controller does not answer.")
            expect(manager.locator("#machine-printer-1 .alert-error")).to_contain_text("10.1.2.3:5000")
            text = maker.locator("#board").inner_text()
            assert not re.search(r"10\.1\.2\.3|ttyUSB|http://", text)
            # And after a reload, from the server-rendered card.
            maker.reload()
            expect(maker.locator("#machine-printer-1 .alert-error")).to_have_text(
                "The machine's controller does not answer."
            )
            assert "10.1.2.3" not in maker.content()
        finally:
            maker_ctx.close()
            manager_ctx.close()
