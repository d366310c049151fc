"""A benchmark's own database: made fresh before the run, dropped after it.

With ``DATABASE_URL`` naming a PostgreSQL server, database ``name`` is (re)created on that server
and ``DATABASE_URL`` pointed at it; otherwise at a SQLite file in a new temporary directory. Call
:func:`setup_database` before ``django.setup()``.
"""

from __future__ import annotations

import os
import tempfile


def _admin(url: str):
    """An autocommit connection to the server of the PostgreSQL ``url`` (to its own database)."""
    import dj_database_url
    import psycopg

    cfg = dj_database_url.parse(url)
    return psycopg.connect(
        host=cfg["HOST"], port=cfg["PORT"], user=cfg["USER"], password=cfg["PASSWORD"],
        dbname=cfg["NAME"], autocommit=True,
    )  # fmt: skip


def setup_database(name: str) -> tuple[str, str]:
    """Point ``DATABASE_URL`` at a fresh database; return (engine name, the URL to drop it from, or '')."""
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        with _admin(url) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name}")
            admin.execute(f"CREATE DATABASE {name}")
        os.environ["DATABASE_URL"] = url.rsplit("/", 1)[0] + f"/{name}"
        return "PostgreSQL", url
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp(prefix=f'{name}-')}/bench.sqlite3"
    return "SQLite", ""


def drop_database(admin_url: str, name: str) -> None:
    """Drop the PostgreSQL database :func:`setup_database` made (nothing to do for SQLite: ``admin_url`` is '')."""
    if not admin_url:
        return
    with _admin(admin_url) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
