"""Store errors are named for what they are: a full disk, a read-only store, a quota, a
permission or a damaged file is no "transient" outage. Real SQLite refusals (its own
SQLITE_FULL from a page limit, SQLITE_READONLY from query_only...), psycopg's SQLSTATEs and
OSError errnos, each bare, wrapped by SQLAlchemy or chained."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import exc

from store.db import is_transient, make_engine
from store.faults import _PG_STATES, _SQLITE_CODES, REASONS, StoreFault, classify, describe
from store.health import probe
from tests.fault_switch import sitecustomize as fault_switch


def caught(action) -> BaseException:
    try:
        action()
    except Exception as err:
        return err
    raise AssertionError("expected the store to refuse")


def full_disk(tmp_path: Path) -> BaseException:
    path = tmp_path / "full.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    fault_switch.fill_free_pages(path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    return caught(lambda: conn.execute("INSERT INTO t VALUES (zeroblob(100000))"))


def read_only(tmp_path: Path) -> BaseException:
    conn = sqlite3.connect(tmp_path / "ro.db")
    conn.execute("PRAGMA query_only = 1")
    return caught(lambda: conn.execute("CREATE TABLE t (x)"))


def cannot_open(tmp_path: Path) -> BaseException:
    return caught(lambda: sqlite3.connect(tmp_path / "no-such-folder" / "x.db"))


def damaged(tmp_path: Path) -> BaseException:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is no database " * 300)
    return caught(lambda: sqlite3.connect(path).execute("SELECT * FROM sqlite_master"))


def locked(tmp_path: Path) -> BaseException:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    return caught(lambda: waiter.execute("BEGIN IMMEDIATE"))


REAL_SQLITE = [
    (full_disk, StoreFault.DISK_FULL),
    (read_only, StoreFault.READ_ONLY),
    (cannot_open, StoreFault.CANNOT_OPEN),
    (damaged, StoreFault.CORRUPT),
    (locked, StoreFault.LOCKED),
]


@pytest.mark.parametrize("make, fault", REAL_SQLITE, ids=[f.value for _, f in REAL_SQLITE])
def test_sqlite_refusals_are_named_by_their_result_code_or_message(tmp_path, make, fault):
    err = make(tmp_path)
    assert isinstance(err, sqlite3.Error)
    assert classify(err) is fault
    wrapped = exc.DBAPIError.instance("INSERT ...", {}, err, sqlite3.Error)
    assert classify(wrapped) is fault and is_transient(wrapped) is fault.transient
    bare = type(err)(str(err))  # a driver that sets no code: the message still tells
    assert classify(bare) is fault
    assert fault.reason in describe(wrapped) and str(err) in describe(wrapped)


PG = [
    ("53100", StoreFault.DISK_FULL),
    ("25006", StoreFault.READ_ONLY),
    ("42501", StoreFault.PERMISSION),
    ("28P01", StoreFault.PERMISSION),
    ("58030", StoreFault.IO_ERROR),
    ("XX001", StoreFault.CORRUPT),
    ("55P03", StoreFault.LOCKED),
    ("57014", StoreFault.LOCKED),
    ("40P01", StoreFault.LOCKED),
    ("08006", StoreFault.UNREACHABLE),
    ("57P01", StoreFault.UNREACHABLE),
    ("53300", StoreFault.UNREACHABLE),
]


@pytest.mark.parametrize("state, fault", PG, ids=[s for s, _ in PG])
def test_postgres_states_are_named_whatever_class_psycopg_gives_them(state, fault):
    orig = psycopg.errors.lookup(state)("the server said no")
    wrapped = exc.DBAPIError.instance("UPDATE runs ...", {}, orig, psycopg.Error)
    assert classify(wrapped) is fault
    assert is_transient(wrapped) is fault.transient


ERRNOS = [
    (errno.ENOSPC, StoreFault.DISK_FULL),
    (errno.EDQUOT, StoreFault.QUOTA),
    (errno.EROFS, StoreFault.READ_ONLY),
    (errno.EACCES, StoreFault.PERMISSION),
    (errno.EPERM, StoreFault.PERMISSION),
    (errno.EIO, StoreFault.IO_ERROR),
]


@pytest.mark.parametrize("number, fault", ERRNOS, ids=[errno.errorcode[n] for n, _ in ERRNOS])
def test_os_errors_are_named_by_errno_even_when_chained(number, fault):
    err = OSError(number, "no")
    assert classify(err) is fault and not is_transient(err)
    try:
        raise RuntimeError("writing the checkpoint") from err
    except RuntimeError as outer:
        assert classify(outer) is fault


def test_what_is_no_store_fault_is_neither_named_nor_retried():
    unique = psycopg.errors.lookup("23505")("duplicate key")
    for err in (
        ValueError("bad"),
        exc.DBAPIError.instance("INSERT", {}, unique, psycopg.Error),
        exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        OSError(errno.ENOENT, "missing"),
    ):
        assert classify(err) is None and not is_transient(err)


def test_an_unexplained_operational_error_stays_a_transient_outage():
    refused = psycopg.OperationalError("connection refused")  # no SQLSTATE: never connected
    assert classify(exc.OperationalError("SELECT 1", {}, refused)) is StoreFault.UNREACHABLE
    assert classify(exc.TimeoutError("QueuePool limit")) is StoreFault.UNREACHABLE


@given(
    code=st.sampled_from(sorted(_SQLITE_CODES)),
    extended=st.integers(min_value=0, max_value=255),
)
def test_an_extended_sqlite_code_keeps_its_primary_codes_fault(code, extended):
    err = sqlite3.OperationalError("whatever SQLite said")
    err.sqlite_errorcode = code | (extended << 8)
    assert classify(err) is _SQLITE_CODES[code]


@given(
    state=st.sampled_from(sorted(_PG_STATES)),
    depth=st.integers(min_value=0, max_value=4),
    wrap=st.booleans(),
)
def test_a_fault_survives_wrapping_and_chaining(state, depth, wrap):
    err: BaseException = psycopg.errors.lookup(state)("no")
    if wrap:
        err = exc.DBAPIError.instance("UPDATE", {}, err, psycopg.Error)
    for level in range(depth):
        try:
            raise RuntimeError(f"level {level}") from err
        except RuntimeError as outer:
            err = outer
    assert classify(err) is _PG_STATES[state]


@given(fault=st.sampled_from(list(StoreFault)))
def test_every_fault_has_words_a_status_and_a_retry_rule(fault):
    assert fault.reason == REASONS[fault] and fault.reason
    assert fault.http_status in (503, 507)
    assert fault.transient is (fault in (StoreFault.UNREACHABLE, StoreFault.LOCKED))
    assert fault.cannot_write is not fault.transient
    assert (fault.http_status == 507) is (fault in (StoreFault.DISK_FULL, StoreFault.QUOTA))


# --- the write probe, against SQLite refusing for real ---


@pytest.fixture
def sqlite_store(tmp_path, monkeypatch):
    """A SQLite file behind an engine with the test switches, and the switch files."""
    fault_switch.install()
    full, ro = tmp_path / "disk-full", tmp_path / "read-only"
    monkeypatch.setenv("STACKLAB_TEST_DISK_FULL_FILE", str(full))
    monkeypatch.setenv("STACKLAB_TEST_READ_ONLY_FILE", str(ro))
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE runs_like (data BLOB)")
        conn.exec_driver_sql("INSERT INTO runs_like VALUES (zeroblob(300000))")
        conn.exec_driver_sql("DELETE FROM runs_like")  # free pages a full disk must not hide
    yield engine, path, full, ro
    engine.dispose()


def test_the_write_probe_sees_a_full_disk_that_select_1_does_not(sqlite_store):
    engine, path, full, _ = sqlite_store
    assert probe(engine).fault is None
    full.touch()
    fault_switch.fill_free_pages(path)
    engine.dispose()  # pooled connections take the limit at their next checkout anyway
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")  # reads go on
    finding = probe(engine)
    assert finding.fault is StoreFault.DISK_FULL
    assert finding.message.startswith("The store's disk is full (database or disk is full)")
    full.unlink()
    assert probe(engine).fault is None


def test_the_write_probe_sees_a_read_only_store(sqlite_store):
    engine, _, _, ro = sqlite_store
    ro.touch()
    assert probe(engine).fault is StoreFault.READ_ONLY
    ro.unlink()
    assert probe(engine).fault is None
    with engine.connect() as conn:  # the probe left nothing behind
        names = conn.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all()
    assert names == ["runs_like"]


def test_too_little_free_space_under_the_file_counts_as_a_full_disk(sqlite_store, monkeypatch):
    from store.settings import get_settings

    engine = sqlite_store[0]
    monkeypatch.setenv("STACKLAB_STORE_MIN_FREE_MB", str(2**40))  # more than any disk
    get_settings.cache_clear()
    try:
        finding = probe(engine)
    finally:
        monkeypatch.delenv("STACKLAB_STORE_MIN_FREE_MB")
        get_settings.cache_clear()
    assert finding.fault is StoreFault.DISK_FULL and "MiB free under" in finding.detail
    assert probe(engine).fault is None


def test_postgres_read_only_is_a_real_25006_to_the_probe():
    from sqlalchemy import create_engine

    from store.db import upgrade_schema
    from tests.stack import PG_ADMIN_URL, create_pg_database

    url, drop = create_pg_database()
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1].split("?")[0]
    try:
        upgrade_schema(url)
        engine = make_engine(url)
        assert probe(engine).fault is None
        engine.dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        finding = probe(engine)
        assert finding.fault is StoreFault.READ_ONLY and "read-only transaction" in finding.detail
        with admin.connect() as conn:
            conn.exec_driver_sql(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        engine.dispose()
        assert probe(engine).fault is None
        engine.dispose()
    finally:
        admin.dispose()
        drop()


@pytest.fixture
def tiny_file_system(tmp_path):
    """Optional: a 2 MiB tmpfs, where mounting is allowed (root, no container policy against
    it); skipped elsewhere. The suite never needs it: the switch above is its full disk."""
    import subprocess

    mount = tmp_path / "mnt"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_really_full_file_system_is_named_a_full_disk(tiny_file_system):
    import subprocess

    path = tiny_file_system / "store.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x BLOB)")
    assert probe(engine).fault is None
    with (tiny_file_system / "ballast").open("wb") as ballast, pytest.raises(OSError) as full:
        while True:
            ballast.write(b"\0" * 65536)
            ballast.flush()
    assert full.value.errno == errno.ENOSPC
    refused = caught(lambda: _insert(engine, 400_000))
    assert classify(refused) is StoreFault.DISK_FULL, refused
    assert probe(engine).fault is StoreFault.DISK_FULL
    engine.dispose()
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_file_system)], check=True)
    finding = probe(engine)
    assert finding.fault is StoreFault.READ_ONLY, finding
    engine.dispose()


def _insert(engine, size: int) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO t VALUES (zeroblob({size}))")
