"""Static files: versioned URLs cached for a year, others revalidated. Polled JSON: ETag and
304 while nothing changed, a new ETag once something did."""

from __future__ import annotations

import re

import pytest

from backend import conditional
from backend.web import IMMUTABLE, VERSIONS
from store.settings import get_settings
from tests.stack import scaled
from tests.web.factories import make_run

REFERENCE = re.compile(r'(?:src|href)="(/(?:static|vendor)/[^"]*)"')


def test_versioned_static_urls_are_cached_for_a_year(client):
    for url, version in VERSIONS.items():
        response = client.get(f"{url}?v={version}")
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == IMMUTABLE, url


def test_unversioned_or_stale_static_urls_are_revalidated(client):
    for url in ("/static/js/api.js", "/static/js/api.js?v=old", "/vendor/plotly.min.js"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "no-cache", url
        again = client.get(url, headers={"If-None-Match": response.headers["etag"]})
        assert again.status_code == 304 and again.content == b"", url


def _references(html: str) -> list[str]:
    return REFERENCE.findall(html)


def test_every_static_reference_in_pages_is_versioned(client):
    run_id = make_run("finetune", "succeeded", metrics={"finetune/val_accuracy": [0.5, 0.6]})
    pages = ["/runs", "/runs/new", f"/runs/{run_id}", "/compare", "/datasets", "/docs"]
    seen = set()
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        for ref in _references(response.text):
            if ref.startswith("/vendor/docs/"):  # Swagger's own assets, from fastapi-offline
                continue
            url, _, query = ref.partition("?")
            assert query == f"v={VERSIONS[url]}", (page, ref)
            seen.add(url)
    assert {"/static/js/api.js", "/static/css/app.css", "/vendor/plotly.min.js"} <= seen


def test_plotly_is_deferred_and_only_on_chart_pages(client):
    run_id = make_run("finetune", "succeeded")
    chart_page = client.get(f"/runs/{run_id}").text
    tag = re.search(r"<script[^>]*/vendor/plotly\.min\.js[^>]*>", chart_page)
    assert tag and " defer" in tag.group(0)
    for page in ("/runs", "/runs/new", "/datasets"):
        assert "plotly" not in client.get(page).text, page


def _poll(client, url: str, tag: str | None = None):
    return client.get(url, headers={"If-None-Match": tag} if tag else {})


def test_unchanged_polls_get_304_without_a_body(client):
    run_id = make_run("finetune", "running", progress={"stage": "finetune", "epoch": 1})
    other = make_run("finetune", "succeeded", metrics={"finetune/val_accuracy": [0.5]})
    urls = [
        f"/api/runs/{run_id}",
        f"/api/runs/{run_id}/curves?max_points=500",
        f"/api/runs/{run_id}/partial",
        "/api/runs/table?status=running",
        "/api/queue",
        f"/api/compare?ids={run_id},{other}",
    ]
    for url in urls:
        # The app's upkeep may touch the running run between two polls (and the runs'
        # validator has a 30 s clock slot): a changed state is a fair 200, so a few tries.
        for _ in range(3):
            first = _poll(client, url)
            assert first.status_code == 200, url
            tag = first.headers["etag"]
            again = _poll(client, url, tag)
            if again.status_code != 200:
                break
        assert again.status_code == 304, url
        assert again.content == b"" and again.headers["etag"] == tag, url


@pytest.fixture
def poll_cache(monkeypatch):
    """Set STACKLAB_POLL_CACHE_SECONDS for one test (the app reads it per poll)."""

    def set_seconds(seconds: float) -> None:
        monkeypatch.setenv("STACKLAB_POLL_CACHE_SECONDS", str(seconds))
        get_settings.cache_clear()

    yield set_seconds
    monkeypatch.undo()  # the module's own value again
    get_settings.cache_clear()


def test_a_new_metric_or_status_gives_a_new_etag(client, poll_cache):
    from store.db import session_scope

    poll_cache(0)  # every poll asks the database: a worker's write shows at once (default 1)
    from store.runs import attempts
    from store.runs import metrics as metrics_service

    run_id = make_run("finetune", "running", progress={"stage": "finetune", "epoch": 1})
    urls = [f"/api/runs/{run_id}", f"/api/runs/{run_id}/curves", "/api/runs/table"]
    tags = {url: _poll(client, url).headers["etag"] for url in urls}

    with session_scope() as session:
        metrics_service.log_epoch(
            session=session,
            run_id=run_id,
            stage="finetune",
            step=1,
            values={"loss": 0.5},
        )
    for url in urls:
        changed = _poll(client, url, tags[url])
        assert changed.status_code == 200 and changed.content, url
        assert changed.headers["etag"] != tags[url], url
        tags[url] = changed.headers["etag"]

    with session_scope() as session:
        attempts.finish(session=session, run_id=run_id, attempt=1, status="succeeded")
    for url in urls:
        changed = _poll(client, url, tags[url])
        assert changed.status_code == 200, url
        assert changed.headers["etag"] != tags[url], url
    assert _poll(client, urls[0]).json()["status"] == "succeeded"


def test_an_edit_through_the_api_gives_a_new_etag(client):
    run_id = make_run("finetune", "succeeded")
    url = f"/api/runs/{run_id}"
    tag = _poll(client, url).headers["etag"]
    client.patch(url, json={"notes": "a new note"})
    changed = _poll(client, url, tag)
    assert changed.status_code == 200 and changed.json()["notes"] == "a new note"


def test_unchanged_polls_are_answered_from_the_kept_validator(client, poll_cache, monkeypatch):
    """Within STACKLAB_POLL_CACHE_SECONDS a poll costs no query and no route; a worker's
    write shows once that time is over."""
    from store.db import session_scope
    from store.runs import metrics as metrics_service

    poll_cache(60)  # the most it may be: "within" it however slow the machine is
    run_id = make_run("finetune", "running", progress={"stage": "finetune", "epoch": 1})
    # The run's route is learnt first: /api/runs/table must still not pass as run "table".
    urls = [f"/api/runs/{run_id}", "/api/runs/table", f"/api/runs/{run_id}/curves"]
    tags = {url: _poll(client, url).headers["etag"] for url in urls}
    reads = []
    real = conditional.current
    monkeypatch.setattr(conditional, "current", lambda *a: reads.append(a) or real(*a))
    with session_scope() as session:  # as a worker writes: not through this web process
        metrics_service.log_epoch(
            session=session, run_id=run_id, stage="finetune", step=1, values={"loss": 0.5}
        )
    for _ in range(3):
        for url in urls:
            kept = _poll(client, url, tags[url])
            assert kept.status_code == 304 and kept.headers["etag"] == tags[url], url
    assert reads == []  # answered before FastAPI's route and its query
    poll_cache(1e-9)  # the kept validators are now older than the cache time: as if it passed
    for url in urls:
        fresh = _poll(client, url, tags[url])
        assert fresh.status_code == 200 and fresh.headers["etag"] != tags[url], url
    assert reads, "the expired validators were read again"


def test_pages_polling_a_changed_run_share_one_route_call(client, poll_cache, monkeypatch):
    """After a change, the first poll runs the route; the others get that same answer."""
    from store.db import session_scope
    from store.runs import metrics as metrics_service

    poll_cache(30)
    run_id = make_run("finetune", "running", progress={"stage": "finetune", "epoch": 1})
    url = f"/api/runs/{run_id}/curves"
    old = _poll(client, url)
    with session_scope() as session:
        metrics_service.log_epoch(
            session=session, run_id=run_id, stage="finetune", step=1, values={"loss": 0.5}
        )
    conditional.VALIDATORS.forget()  # as when the kept validator expires
    reads = []
    real = conditional.current
    monkeypatch.setattr(conditional, "current", lambda *a: reads.append(a) or real(*a))
    pages = [_poll(client, url, old.headers["etag"]) for _ in range(6)]
    pages += [client.get(url, headers={"Accept-Encoding": "identity"}) for _ in range(2)]
    assert all(page.status_code == 200 for page in pages)
    assert len({page.headers["etag"] for page in pages}) == 1 != old.headers["etag"]
    assert all(page.json() == pages[0].json() for page in pages)
    assert pages[0].json() != old.json()
    assert "set-cookie" not in pages[1].headers  # a kept answer carries no one's cookie
    # One validator read and one route call, and one more route call for the other encoding.
    assert len(reads) == 3, reads


def test_a_poll_of_no_run_or_a_huge_id_is_the_routes_answer(client):
    run_id = make_run("finetune", "succeeded")
    tag = _poll(client, f"/api/runs/{run_id}").headers["etag"]
    assert _poll(client, "/api/runs/999999", tag).status_code == 404
    assert _poll(client, f"/api/runs/{2**70}", tag).status_code == 404
    assert _poll(client, "/api/runs/x1", tag).status_code == 422


def test_api_js_sends_the_etag_and_reuses_the_body_on_304():
    import json
    import shutil
    import subprocess
    from pathlib import Path

    import pytest

    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed")
    api_js = (Path(__file__).resolve().parents[2] / "static/js/api.js").read_text()
    script = (
        api_js
        + """
    const sent = [];
    globalThis.fetch = async (path, init) => {
      sent.push(init.headers["If-None-Match"] || null);
      const first = sent.length === 1;
      return {
        status: first ? 200 : 304, ok: first,
        headers: { get: () => 'W/"v1"' },
        text: async () => (first ? '{"n": 1}' : ""),
      };
    };
    (async () => {
      const a = await api.get("/api/x");
      const b = await api.get("/api/x");
      console.log(JSON.stringify({ a, b, sent }));
    })();
    """
    )
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=scaled(120))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"a": {"n": 1}, "b": {"n": 1}, "sent": [None, 'W/"v1"']}
