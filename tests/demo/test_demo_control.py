"""The demo's job requests: one request, taken once; a broken one is dropped."""

from __future__ import annotations

import pytest

from firmware_bridge.simulators import demo_control


def test_a_request_is_taken_once(tmp_path):
    demo_control.request_job(tmp_path, "co2-laser", seconds=90, name="lamp.nc")
    assert demo_control.pending(tmp_path, "co2-laser")
    assert demo_control.take_job(tmp_path, "co2-laser") == {"seconds": 90.0, "name": "lamp.nc"}
    assert demo_control.take_job(tmp_path, "co2-laser") is None
    assert list(tmp_path.iterdir()) == []


def test_a_broken_request_is_dropped(tmp_path):
    (tmp_path / "shapeoko.job").write_text("{not json")
    assert demo_control.take_job(tmp_path, "shapeoko") is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("slug", ["", "../etc", ".hidden", "a/b"])
def test_only_machine_slugs_name_a_request(tmp_path, slug):
    with pytest.raises(ValueError):
        demo_control.request_job(tmp_path, slug, seconds=1, name="x")
