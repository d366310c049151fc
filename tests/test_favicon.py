"""The site has a favicon: linked from every page, served from static, and /favicon.ico is no 404."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_every_page_links_the_icons_and_each_file_exists(client):
    html = client.get("/labs/").content.decode()
    links = re.findall(r'<link rel="(icon|apple-touch-icon)" href="/static/([^"]+)"', html)
    assert {path for _rel, path in links} == {
        "fablab/favicon.ico",
        "fablab/favicon.svg",
        "fablab/apple-touch-icon.png",
    }
    for _rel, path in links:
        assert finders.find(path), path


def test_favicon_ico_redirects_to_the_static_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/fablab/favicon.ico"


def test_the_icon_files_are_what_their_names_say():
    ico = Path(finders.find("fablab/favicon.ico")).read_bytes()
    assert ico[:4] == b"\x00\x00\x01\x00" and ico[4] >= 1  # an ICO with at least one image
    png = Path(finders.find("fablab/apple-touch-icon.png")).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == int.from_bytes(png[20:24], "big") == 180
    svg = Path(finders.find("fablab/favicon.svg")).read_text(encoding="utf-8")
    assert svg.startswith("<svg") and 'viewBox="0 0 32 32"' in svg
