"""An unexpected error is a 500 with the error page (or JSON), never a bare text page."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from tests.stack import stack_env


@pytest.fixture
def broken_client(tmp_path):
    from fastapi.testclient import TestClient

    with stack_env({"STACKLAB_DATA_DIR": str(tmp_path)}):
        from backend.main import create_app

        app = create_app()

        def boom():
            raise RuntimeError("secret internals")

        def duplicate():
            raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

        for path, endpoint in (("/boom", boom), ("/dup", duplicate)):
            app.add_api_route(path, endpoint)
            app.add_api_route(f"/api{path}", endpoint)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client


@pytest.mark.parametrize("path", ["/boom", "/dup"])
def test_an_unexpected_error_is_a_500_page_for_browsers_and_json_for_the_api(broken_client, path):
    page = broken_client.get(path, headers={"accept": "text/html"})
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in page.text and "secret internals" not in page.text
    api = broken_client.get(f"/api{path}")
    assert api.status_code == 500 and "server log" in api.json()["detail"]


def test_not_found_pages_are_still_404(broken_client):
    assert broken_client.get("/runs/999999").status_code == 404
    assert broken_client.get("/api/runs/999999").json() == {"detail": "run 999999 not found"}
