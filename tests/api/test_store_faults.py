"""A store that answers but cannot write, as the web tells it: /api/ready says so and why,
launches are refused naming the cause (507 for a full disk, 503 for a read-only store),
pages carry a banner; all of it clears once writes land again. SQLite's own SQLITE_FULL
(its page limit at the file's size) and PostgreSQL's own 25006 (the database set
read-only), not a raised fake."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc

from store.db import get_engine, reset_caches
from store.settings import get_settings
from tests.fault_switch import sitecustomize as fault_switch
from tests.fault_switch.sitecustomize import fill_free_pages
from tests.stack import PG_ADMIN_URL

PRETRAIN = {"ae01": {"epochs": 1}, "ae02": {"epochs": 1}, "ae03": {"epochs": 1}}
RUN = {"kind": "pretrain", "dataset": "demo-tiny", "params": PRETRAIN}


class CannotWrite:
    """SQLite: a full disk (the switch file, its free pages used up). PostgreSQL: read-only."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.url = get_settings().sqlalchemy_url
        self.sqlite = self.url.startswith("sqlite")
        self.flag = tmp_path / "disk-full"
        monkeypatch.setenv("STACKLAB_STORE_PROBE_SECONDS", "0")  # every request probes
        fault_switch.install()
        if self.sqlite:
            monkeypatch.setenv("STACKLAB_TEST_DISK_FULL_FILE", str(self.flag))
        reset_caches()

    def _pg(self, sql: str) -> None:
        name = self.url.rsplit("/", 1)[1].split("?")[0]
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(sql.format(f'"{name}"'))
        admin.dispose()

    def on(self) -> None:
        if self.sqlite:
            self.flag.touch()
            fill_free_pages(Path(self.url.removeprefix("sqlite:///")))
        else:
            self._pg("ALTER DATABASE {} SET default_transaction_read_only = on")
        get_engine().dispose()

    def off(self) -> None:
        if self.sqlite:
            self.flag.unlink(missing_ok=True)
        else:
            self._pg("ALTER DATABASE {} RESET default_transaction_read_only")
        get_engine().dispose()


@pytest.fixture
def cannot_write(client, tmp_path, monkeypatch):
    switch = CannotWrite(tmp_path, monkeypatch)
    yield switch
    switch.off()
    monkeypatch.undo()
    reset_caches()


def test_a_store_that_cannot_write_is_not_ready_and_refuses_launches_naming_why(
    client, cannot_write
):
    assert client.get("/api/ready").status_code == 200
    cannot_write.on()
    assert client.get("/api/runs").status_code == 200  # reading goes on
    ready = client.get("/api/ready")
    body = ready.json()
    assert ready.status_code == 503 and body["database"] == "unavailable"
    launch = client.post("/api/runs", json=RUN)
    if cannot_write.sqlite:
        assert body["database_fault"] == "disk_full"
        assert "The store's disk is full" in body["detail"]
        assert launch.status_code == 507
        assert launch.json()["detail"].startswith("The store's disk is full")
    else:
        assert body["database_fault"] == "read_only"
        assert "The store is read-only" in body["detail"]
        assert launch.status_code == 503
        assert launch.json()["detail"].startswith("The store is read-only")
    assert "not answering" not in launch.json()["detail"]
    assert launch.headers["Retry-After"]
    page = client.get("/runs", headers={"accept": "text/html"})
    assert page.status_code == 200 and 'class="store-fault"' in page.text
    assert "The store cannot write" in page.text
    cannot_write.off()
    assert client.get("/api/ready").status_code == 200
    assert client.post("/api/runs", json=RUN).status_code == 201
    page = client.get("/runs", headers={"accept": "text/html"})
    assert 'class="store-fault"' not in page.text


def test_a_write_the_store_refuses_is_answered_with_its_cause(client, tmp_path, monkeypatch):
    """No probe in the way (a cancel is no launch): the store's own refusal is mapped to an
    answer naming it. SQLite's query_only and PostgreSQL's read-only database refuse every
    write, however small."""
    run = client.post("/api/runs", json=RUN).json()[0]
    switch = CannotWrite(tmp_path, monkeypatch)
    flag = tmp_path / "read-only"
    if switch.sqlite:
        monkeypatch.setenv("STACKLAB_TEST_READ_ONLY_FILE", str(flag))
        reset_caches()
        flag.touch()
    else:
        switch.on()
    try:
        response = client.post(f"/api/runs/{run['id']}/cancel")
    finally:
        flag.unlink(missing_ok=True)
        switch.off()
        monkeypatch.undo()
        reset_caches()
    assert response.status_code == 503, response.text
    assert response.json()["detail"].startswith("The store is read-only")
    assert client.post(f"/api/runs/{run['id']}/cancel").status_code == 200


def test_a_full_disk_is_a_507_naming_it(tmp_path):
    from backend.api_errors import store_answer
    from tests.store.test_faults import full_disk

    err = full_disk(tmp_path)
    status, message = store_answer(exc.DBAPIError.instance("INSERT", {}, err, Exception))
    assert status == 507 and message.startswith("The store's disk is full")
