"""Each report test starts with an empty cache: report snapshots must never leak from one test's
database into the next (ids and row counts repeat after a rollback)."""

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()
