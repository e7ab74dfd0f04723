"""What the autoencoders learned on the pages: a pretrain's probe scores, filters and PCA on
its run page and in compare, read from the files its probe stage stored; older runs say
they have none."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from backend.runs import learned
from jobspec.learned import ENCODERS, LEARNED_FILE, LEARNED_FILTERS_FILE
from tests.web.factories import make_run

HOSTILE = "<script>alert(1)</script>"


def learned_json(shift: float = 0.0, *, classes=("cat", HOSTILE)) -> bytes:
    """A learned.json as the probe stage writes it: four encoders, two classes."""

    def scores(base: float) -> dict:
        names = (
            "probe_accuracy",
            "probe_balanced_accuracy",
            "knn_accuracy",
            "knn_balanced_accuracy",
        )
        found = {name: base + shift for name in names}
        return found | {f"val_{name}": base for name in names} | {"features": 256}

    pca = {
        "x": [0.1, -0.2, 0.3],
        "y": [1.0, 0.5, -1.0],
        "label": [0, 1, 1],
        "explained": [0.4, 0.2],
    }
    encoders = {name: scores(0.5 + 0.1 * i) | {"pca": pca} for i, name in enumerate(ENCODERS)}
    encoders["random"] = scores(0.3) | {"pca": pca}
    summary = {
        "version": 1,
        "k": 10,
        "pool_grid": 2,
        "c": 1.0,
        "max_iter": 300,
        "max_images": 50,
        "max_pca_points": 1000,
        "images": {"train": 50, "validation": 6, "test": 20},
        "available": {"train": 54, "validation": 6, "test": 20},
        "classes": list(classes),
        "encoders": encoders,
        "seconds": 1.5,
    }
    return json.dumps(summary).encode()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def runs(client):
    files = {LEARNED_FILE: learned_json(), LEARNED_FILTERS_FILE: png()}
    return {
        "probed": make_run("pretrain", artifacts=files),
        "better": make_run("pretrain", artifacts={LEARNED_FILE: learned_json(0.05)}),
        "old": make_run("pretrain"),
        "running": make_run("pretrain", "running"),
        "failed_probe": make_run(
            "pretrain", artifacts={LEARNED_FILE: b'{"version": 1, "error": "ValueError: x"}'}
        ),
        "finetune": make_run("finetune"),
    }


def test_the_run_page_shows_scores_filters_and_the_pca(client, runs):
    page = client.get(f"/runs/{runs['probed']}").text
    assert 'id="learned-card"' in page
    assert "AE01-02" in page and "random init (stacked shape)" in page
    assert "60.0%" in page  # AE01-02's linear-probe test accuracy (0.5 + 0.1)
    assert "+40.0 pts" in page  # the stacked encoder against random: 0.7 - 0.3, in points
    assert "data:image/png;base64," in page
    assert 'id="learned-pca-figure"' in page and "/static/js/learned.js" in page
    assert HOSTILE not in page  # a class name is text, in the figure too
    assert "At most 50 images of each part" in page  # the training part was capped


def test_a_pretrain_without_probe_results_says_so(client, runs):
    old = client.get(f"/runs/{runs['old']}").text
    assert 'id="learned-missing"' in old and "finished before pretrains probed" in old
    running = client.get(f"/runs/{runs['running']}").text
    assert "Probe scores come at the end of the run" in running
    assert 'data-waiting="true"' in running and 'data-waiting="true"' not in old
    failed = client.get(f"/runs/{runs['failed_probe']}").text
    assert "The probe stage failed (ValueError: x)" in failed
    assert 'id="learned-card"' not in client.get(f"/runs/{runs['finetune']}").text


def test_compare_has_a_row_per_encoder_and_scorer(client, runs):
    ids = f"{runs['probed']},{runs['better']},{runs['finetune']}"
    data = client.get(f"/api/compare?ids={ids}").json()
    rows = {row["key"]: row for row in data["tests"] if row["key"].startswith("learned/")}
    assert len(rows) == 2 * len(ENCODERS)
    stacked = rows["learned/ae03/probe_balanced_accuracy"]
    assert stacked["cells"][str(runs["probed"])]["value"] == pytest.approx(0.7)
    assert stacked["best_run"] == str(runs["better"])
    assert str(runs["finetune"]) not in stacked["cells"]
    assert stacked["label"] == "linear-probe balanced acc (%) · stacked (AE01-03)"


def test_the_report_section_has_no_figure(client, runs):
    from store.db import session_scope

    with session_scope() as session:
        section = learned.for_report(session, runs["probed"])
        assert learned.for_report(session, runs["old"]) is None
    assert section is not None and "pca" not in section
    assert [r["encoder"] for r in section["rows"]] == list(ENCODERS)
    assert section["filters_src"].startswith("data:image/png;base64,")
    from backend.web import templates

    html = templates.env.get_template("runs/_learned.html").render(learned=section, report=True)
    assert "AE01's filters" in html and "learned-pca" not in html and "<script" not in html


def test_an_unreadable_file_reads_as_none():
    assert learned.section({"encoders": "nonsense"})["rows"] == []
    assert learned.pca_figure({"encoders": {"ae01": {"pca": "x"}}}) is None
