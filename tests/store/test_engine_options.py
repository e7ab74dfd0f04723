"""PostgreSQL connection options: the URL's own are kept beside our timeouts."""

from __future__ import annotations

from store.db import _pg_timeouts
from store.settings import Settings


def _options(url: str) -> list[str]:
    settings = Settings(db_statement_timeout_seconds=30, db_lock_timeout_seconds=10)
    return str(_pg_timeouts(url, settings)["options"]).split(" -c ")


def test_an_options_parameter_given_twice_keeps_both_beside_the_timeouts():
    url = "postgresql+psycopg://u@h/d?options=-c%20a%3D1&options=-c%20b%3D2"
    assert _options(url) == ["-c a=1", "b=2", "statement_timeout=30000", "lock_timeout=10000"]


def test_a_url_without_options_gets_the_timeouts_only():
    url = "postgresql+psycopg://u@h/d"
    assert _options(url) == ["-c statement_timeout=30000", "lock_timeout=10000"]
