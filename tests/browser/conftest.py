"""A live stacklab (uvicorn + a real Celery worker, embedded defaults) and headless Chromium."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from jobspec.scheduling import Lane
from tests.browser.chromium import CHROMIUM, ms
from tests.browser.watch import watch
from tests.stack import FAST, Workers, stack_env, start_web


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    """Base URL of a running app with one worker and a small demo data set."""
    data_dir = tmp_path_factory.mktemp("live")
    env = {
        "STACKLAB_DATA_DIR": str(data_dir),
        "STACKLAB_QUEUE": f"ui-{uuid.uuid4().hex[:8]}",
        **FAST,
    }
    with stack_env(env):
        from store.db import upgrade_schema
        from worker.datasets import register
        from worker.ml.datasets.demo import make_demo

        upgrade_schema()
        register(make_demo(seed=0, n_train=300, n_test=60), name="demo-ui")
        # 60 down to 12 images per class: its ablation study defaults to balanced accuracy.
        register(make_demo(seed=0, n_train=300, n_test=60, imbalance=0.2), name="demo-imbalanced")
        # The built-in one's 5,000 training images, for quick runs to sample from; 100 test
        # images (not its 1,000) to score them on, a second rather than ten on a busy machine.
        register(make_demo(seed=0, n_train=5000, n_test=100), name="demo")
        workers = Workers(os.environ, data_dir)
        workers.start("ui-worker")  # starts while the web app does
        workers.start("ui-cpu-lane", Lane.CPU)  # imports and "evaluate now"
        try:
            with start_web(os.environ, log=data_dir / "web.log") as web:
                yield web.url
        finally:
            workers.stop_all(timeout=5)  # the stack ends here: no need to wait politely


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser, live):
    """A fresh page; requests to any host but the app are blocked and recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, base_url=live)
    context.set_default_timeout(ms(60))  # Playwright's own 30 s, for a slow machine
    outside: list[str] = []

    def guard(route):
        url = route.request.url
        if url.startswith(live) or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.outside_requests = outside
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def watched(page):
    """The page, also recording CSP violations, console errors, failed responses and the
    scripts it fetched (tests/browser/watch.py); check it with watch.assert_clean."""
    return watch(page)
