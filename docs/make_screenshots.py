"""Regenerate the README's screenshots from a real (small) experiment on the demo data.

    python docs/make_screenshots.py        # about 6 minutes on 2 CPU cores

Starts the app and one worker on a temporary embedded store, runs a pretrain on imbalanced
demo data, a pretraining-benefit ablation study (3 seeds) on its weights and a small tune,
then photographs the pages with headless Chromium into docs/screenshots/: each at 1366 px
(NAME.png, the README's), 1920 px (NAME-1920.png) and 390 px (NAME-390.png), and the most
used ones in dark mode (NAME-dark.png).
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from jobspec.status import RunStatus  # noqa: E402
from tests.stack import Workers, stack_env, start_web, wait_for  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
# Window sizes (width, height) -> file name suffix: a laptop (the README's), a wide screen
# and a phone.
SIZES = {(1366, 900): "", (1920, 1080): "-1920", (390, 844): "-390"}
DARK = ("runs", "run-finetune", "ablation-study")
STAGE = {"epochs": 3, "batch_size": 32}


def _finished(base: str, run_ids: list[int], timeout: float) -> None:
    def done() -> bool:
        runs = [httpx.get(f"{base}/api/runs/{i}").json() for i in run_ids]
        return all(r["status"] in RunStatus.finished() for r in runs)

    wait_for(done, timeout=timeout, what=f"runs {run_ids}", every=2)


def experiment(base: str) -> dict:
    """Pretrain, then a pretraining-benefit study on its weights, then a tune."""
    post = lambda path, body: httpx.post(f"{base}{path}", json=body, timeout=30).json()  # noqa: E731
    pre = post(
        "/api/runs",
        {
            "kind": "pretrain",
            "dataset": "demo-small",
            "name": "layer-wise AE01-03",
            "params": {"ae01": STAGE, "ae02": STAGE, "ae03": STAGE, "bn_momentum": 0.9},
        },
    )[0]["id"]
    _finished(base, [pre], 900)
    group = post(
        "/api/ablations",
        {
            "dataset": "demo-small",
            "factor": "pretraining",
            "name": "what does pretraining buy?",
            "parent_run_id": pre,
            "seeds": [0, 1, 2],
            "params": {
                "encoder": "single",
                "epochs": 6,
                "batch_size": 32,
                "bn_momentum": 0.9,
                "early_stopping": {"patience": 3},
            },
        },
    )["group_id"]
    runs = httpx.get(f"{base}/api/runs", params={"group_id": group}).json()["items"]
    tune = post(
        "/api/runs",
        {
            "kind": "tune",
            "dataset": "demo-small",
            "name": "AE01 search",
            "params": {
                "n_trials": 4,
                "epochs": 2,
                "batch_size": 64,
                "kernel_sizes": [3, 5],
                "optimizers": ["adam", "sgd"],
                "bn_momentum": 0.9,
            },
        },
    )[0]["id"]
    _finished(base, [r["id"] for r in runs] + [tune], 1800)
    finetunes = sorted(r["id"] for r in runs)
    httpx.patch(
        f"{base}/api/runs/{pre}",
        json={
            "notes": "Layer-wise pretraining on imbalanced demo data (4:1).\n\n"
            "- AE01-03: 3 epochs each, BN momentum 0.9\n"
            "- **Question:** does the pretrained encoder beat the same network from scratch?"
        },
        timeout=30,
    )
    return {"pretrain": pre, "group": group, "tune": tune, "compare": finetunes[:2]}


def photograph(base: str, ids: dict) -> None:
    from playwright.sync_api import sync_playwright

    pages = {
        "welcome": "/welcome",
        "runs": "/runs",
        "run-pretrain": f"/runs/{ids['pretrain']}",
        "run-finetune": f"/runs/{ids['compare'][0]}",
        "ablation-study": f"/groups/{ids['group']}",
        "experiment-report": f"/experiments/{ids['pretrain']}",
        "compare": f"/compare?ids={ids['compare'][0]},{ids['compare'][1]}",
        "study": f"/studies/{ids['tune']}",
        "new-run-form": "/runs/new?kind=finetune",
        "dataset": "/datasets/demo-small",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        for (width, height), suffix in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            for name, path in pages.items():
                _shoot(page, base + path, OUT / f"{name}{suffix}.png")
            page.close()
        # Dark mode (the browser's preference): the pages most often open, at 1366 px.
        page = browser.new_page(viewport={"width": 1366, "height": 900}, color_scheme="dark")
        for name in DARK:
            _shoot(page, base + pages[name], OUT / f"{name}-dark.png")
        browser.close()


def _shoot(page, url: str, path: Path) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    time.sleep(1.5)  # let Plotly finish drawing
    page.screenshot(path=str(path), full_page=False)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {"STACKLAB_DATA_DIR": tmp, "STACKLAB_QUEUE": f"shots-{uuid.uuid4().hex[:6]}"}
        with stack_env(env):
            import os

            from store.db import upgrade_schema
            from worker.datasets import register
            from worker.ml.datasets.demo import make_demo

            upgrade_schema()
            demo = make_demo(seed=0, n_train=1200, n_test=400, imbalance=0.25)
            register(demo, name="demo-small")
            workers = Workers(os.environ, Path(tmp))
            workers.start("shots")
            try:
                with start_web(os.environ, log_level="warning") as web:
                    photograph(web.url, experiment(web.url))
            finally:
                workers.stop_all()
    print(f"screenshots in {OUT}")


if __name__ == "__main__":
    main()
