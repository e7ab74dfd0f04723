"""The experiment report (page, JSON, self-contained export), notes (PATCH, markdown
escaped, limits) and what the run page now reads from a result: split, warnings, stopped
early, reconstruction yardsticks, imbalance-aware scores."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from backend.reports import notes
from tests.web.factories import make_run
from tests.web.report_factories import HOSTILE, make_experiment, make_finetune, make_pretrain

ESCAPED_HOSTILE = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


@pytest.fixture(scope="module")
def exp(client):
    return make_experiment()


class Refs(HTMLParser):
    """Every src/href/srcset/action/poster value and every <script> and <link> tag."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.in_notes = 0
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "poster", "data") and value:
                self.urls.append((tag, name, value))


# --- the report ------------------------------------------------------------------------


def test_report_json_gathers_the_experiment(client, exp):
    response = client.get(f"/api/experiments/{exp['pretrain']}")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["root"]["id"] == exp["pretrain"] and data["dataset"]["name"] == "demo-tiny"
    assert [s["stage"] for s in data["root"]["stages"]] == ["ae01", "ae02", "ae03"]
    assert data["root"]["stages"][0]["epochs_planned"] == 2
    sticks = data["root"]["yardsticks"]
    ae01 = next(r for r in sticks["stages"] if r["stage"] == "ae01")
    assert ae01["reading"].startswith("better than the data set's mean image but worse than")
    assert ae01["zeros_note"] == "37.5% of its output pixels are exactly 0"
    ae02 = next(r for r in sticks["stages"] if r["stage"] == "ae02")
    assert ae02["reading"].startswith("better than both baselines")
    assert data["root"]["split"]["short"] == "ffffffff0000"
    tunes = {t["id"]: t["relation"] for t in data["tunes"]}
    assert tunes == {
        exp["tune_child"]: "uses this pretrain",
        exp["tune_before"]: "before it, same data set",
    }
    rows = {f["id"]: f for f in data["finetunes"]}
    assert exp["finetune"] in rows and len(rows) == 7  # its own and the study's six
    own = rows[exp["finetune"]]
    assert own["kept_epoch"] == 2 and own["training"] == "stopped early at epoch 3 of 5"
    assert own["augment"] is True and own["class_weights"] is True and own["seed"] == 3
    assert own["scores"]["accuracy"] == pytest.approx(0.5)
    assert own["scores"]["macro_f1"] is not None and own["notes"] == "finetune *notes*"
    [study] = data["studies"]
    assert study["group"]["id"] == exp["group"] and study["factor"]["name"] == "augmentation"
    assert study["verdict"]["outcome"] == "helped" and study["rule"]


def test_report_of_a_run_that_is_not_a_pretrain(client, exp):
    assert client.get(f"/api/experiments/{exp['finetune']}").status_code == 404
    page = client.get(f"/experiments/{exp['finetune']}", follow_redirects=False)
    assert page.status_code == 307
    assert page.headers["location"] == f"/experiments/{exp['pretrain']}"
    assert client.get("/experiments/987654").status_code == 404


def test_report_page_shows_tables_verdicts_and_escaped_notes(client, exp):
    html = client.get(f"/experiments/{exp['pretrain']}").text
    assert "Reconstruction yardsticks" in html and "filling each image with its mean colour" in html
    assert f"/api/runs/{exp['pretrain']}/reconstructions.png" in html
    assert f'href="/runs/{exp["finetune"]}"' in html and f'href="/groups/{exp["group"]}"' in html
    assert "Augmentation helped" in html and "Does data augmentation help?" in html
    assert "aug study &lt;i&gt;" in html
    assert "<h2>Findings</h2>" in html  # markdown rendered
    assert ESCAPED_HOSTILE in html and HOSTILE not in html  # raw HTML shown as text
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">' in html
    assert "finetune <em>notes</em>" in html
    assert "<svg" in html and 'id="export-link"' in html
    assert "/static/js/report.js" in html and "/static/js/notes.js" in html
    assert "/vendor/plotly.min.js" not in html  # charts are inline SVG


def test_export_is_one_self_contained_file(client, exp, tmp_path):
    response = client.get(f"/experiments/{exp['pretrain']}/report.html")
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert "experiment-" in response.headers["content-disposition"]
    text = response.text
    refs = Refs()
    refs.feed(text)
    outside = [
        (tag, name, url)
        for tag, name, url in refs.urls
        if not url.startswith("data:") and not url.startswith("#")
    ]
    # The only links left are the plain-text links the researcher wrote in the notes.
    assert outside == [("a", "href", "https://example.org")]
    assert "script" not in refs.tags and "link" not in refs.tags and "iframe" not in refs.tags
    assert re.search(r"url\(", text) is None and "@import" not in text
    assert "http://" not in text  # not even an SVG namespace
    assert [m for m in re.findall(r"https://[^\s\"'<)]+", text)] == ["https://example.org"]
    # The data is in it: tables, verdict, the image inline, the notes escaped.
    assert "<style>" in text and "data:image/png;base64," in text
    assert "Augmentation helped" in text and "stopped early at epoch 3 of 5" in text
    assert ESCAPED_HOSTILE in text and HOSTILE not in text
    assert f"/runs/{exp['finetune']}" not in text  # no links into the site
    path = tmp_path / "report.html"
    path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8").count("<svg") == 2


def test_report_without_children_or_results(client):
    pretrain = make_run("pretrain", "running", name="lonely <b>pre</b>")
    data = client.get(f"/api/experiments/{pretrain}").json()
    assert data["finetunes"] == [] and data["studies"] == [] and data["running"] is True
    assert data["root"]["yardsticks"] is None
    html = client.get(f"/experiments/{pretrain}").text
    assert "No finetune uses this pretrain yet" in html and "lonely &lt;b&gt;pre&lt;/b&gt;" in html
    export = client.get(f"/experiments/{pretrain}/report.html").text
    assert "data:image/png" not in export and "No notes yet." in export


# --- notes ------------------------------------------------------------------------------


def test_patch_changes_only_the_fields_sent(client):
    run_id = make_run("finetune", name="patch-me", tags=["a"])
    response = client.patch(f"/api/runs/{run_id}", json={"notes": "**bold** <b>raw</b>"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["notes"] == "**bold** <b>raw</b>" and body["name"] == "patch-me"
    assert body["notes_html"] == "<p><strong>bold</strong> &lt;b&gt;raw&lt;/b&gt;</p>\n"
    body = client.patch(f"/api/runs/{run_id}", json={"name": " renamed ", "tags": ["x"]}).json()
    assert body["name"] == "renamed" and body["tags"] == ["x"]
    assert body["notes"] == "**bold** <b>raw</b>"  # kept
    assert client.get(f"/api/runs/{run_id}").json()["notes"] == "**bold** <b>raw</b>"
    assert client.patch(f"/api/runs/{run_id}", json={"notes": ""}).json()["notes"] is None
    assert client.patch("/api/runs/987654", json={"notes": "x"}).status_code == 404


def test_patch_limits_name_the_field_and_the_setting(client):
    from store.settings import get_settings

    run_id = make_run("finetune", name="limits")
    settings = get_settings()
    too_long = "x" * (settings.max_notes_chars + 1)
    response = client.patch(f"/api/runs/{run_id}", json={"notes": too_long})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "notes"] and "STACKLAB_MAX_NOTES_CHARS" in error["msg"]
    long_name = "n" * (settings.max_name_length + 1)
    [error] = client.patch(f"/api/runs/{run_id}", json={"name": long_name}).json()["detail"]
    assert error["loc"] == ["body", "name"] and "STACKLAB_MAX_NAME_LENGTH" in error["msg"]
    tags = ["t"] * (settings.max_tags + 1)
    [error] = client.patch(f"/api/runs/{run_id}", json={"tags": tags}).json()["detail"]
    assert error["loc"] == ["body", "tags"]
    for body in ({"name": "   "}, {"status": "succeeded"}):
        assert client.patch(f"/api/runs/{run_id}", json=body).status_code == 422
    assert client.get(f"/api/runs/{run_id}").json()["notes"] is None


@pytest.mark.parametrize(
    ("markdown", "absent", "present"),
    [
        ("<script>alert(1)</script>", "<script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('<img src=x onerror="alert(1)">', "<img", "&lt;img src=x onerror="),
        ("[x](javascript:alert(1))", 'href="javascript', "[x](javascript:alert(1))"),
        ("[x](JaVaScRiPt:alert(1))", "href=", "[x]"),
        ("[x](data:text/html;base64,PHNjcmlwdD4=)", "href=", "[x]"),
        ("[x](//evil.example/a)", "href=", "[x]"),
        ("![pic](https://evil.example/p.png)", "<img", 'href="https://evil.example/p.png"'),
        ('[x](/runs/1 "t\\" onclick=\\"alert(1)")', 'onclick="alert', 'href="/runs/1"'),
        ("<https://ok.example>", "<script", 'href="https://ok.example"'),
    ],
)
def test_hostile_notes_come_out_escaped(markdown, absent, present):
    html = str(notes.render(markdown))
    assert absent not in html and present in html


def test_links_allowed_only_to_http_and_this_site():
    assert notes.allowed_link("https://a.example/x") and notes.allowed_link("/runs/2")
    assert notes.allowed_link("#top") and notes.allowed_link("page.html")
    for bad in ("javascript:x", "vbscript:x", "file:///etc/passwd", "mailto:a@b", "//x.example"):
        assert not notes.allowed_link(bad), bad


# --- the run page's new readings -----------------------------------------------------------


def test_pretrain_run_page_reads_its_yardsticks(client, exp):
    html = client.get(f"/runs/{exp['pretrain']}").text
    assert 'id="yardsticks-card"' in html and "baseline: the data set&#39;s mean image" in html
    assert "better than the data set&#39;s mean image but worse than filling each image" in html
    assert "37.5% of its output pixels are exactly 0" in html
    assert "MSE per probe image" in html and "0.0310" in html  # ae02's third probe image
    assert 'id="run-split"' in html and "ffffffff0000" in html and "10% validation" in html
    assert f'href="/experiments/{exp["pretrain"]}"' in html
    assert ESCAPED_HOSTILE in html and HOSTILE not in html  # its notes, rendered


def test_finetune_run_page_says_how_training_ended_and_reads_imbalance(client, exp):
    html = client.get(f"/runs/{exp['finetune']}").text
    assert "stopped early at epoch 3 of 5" in html and "keeps epoch 2" in html
    assert 'id="warnings-card"' in html and "another train/validation split" in html
    assert 'id="eval-f1"' in html and 'id="eval-rare"' in html
    assert f'href="/experiments/{exp["pretrain"]}"' in html  # lineage: its experiment
    assert "Click a cell to see its test images" in html
    assert 'id="mistakes-card"' in html and 'id="cell-errors"' in html
    confusion = client.get(f"/api/runs/{exp['finetune']}/confusion").json()
    assert confusion["shown"] == list(range(10))
    assert confusion["errors_url"] == f"/api/runs/{exp['finetune']}/errors"


def test_older_results_still_read(client):
    """Runs from before epochs_planned: stopped_early was true whenever patience ran out."""
    from tests.web.factories import finetune_result

    result = finetune_result(best_epoch=4, epochs_run=5)
    result["training"]["stopped_early"] = True
    run_id = make_run("finetune", params={"epochs": 5}, result=result)
    html = client.get(f"/runs/{run_id}").text
    assert "ran all 5 epochs" in html and "stopped early" not in html
    assert 'id="warnings-card"' not in html and 'id="run-split"' not in html
    pretrain = make_pretrain("plain-pretrain")
    assert client.get(f"/runs/{pretrain}").status_code == 200


def test_stopped_early_counts_as_done(client):
    run_id = make_finetune(None, name="done-early")
    html = client.get(f"/runs/{run_id}").text
    assert 'id="p-pct">100%<' in html


def test_the_report_page_hands_its_template_plain_objects(client, exp, monkeypatch):
    from backend import web
    from store.base import Base

    seen: list[dict] = []
    real = web.templates.TemplateResponse

    def record(request, name, context, *args, **kwargs):
        seen.append(context)
        return real(request, name, context, *args, **kwargs)

    monkeypatch.setattr(web.templates, "TemplateResponse", record)
    assert client.get(f"/experiments/{exp['pretrain']}").status_code == 200

    def rows(value, depth=0):
        if isinstance(value, Base):
            return [value]
        if depth > 5 or not isinstance(value, dict | list | tuple):
            return []
        items = value.values() if isinstance(value, dict) else value
        return [row for item in items for row in rows(item, depth + 1)]

    assert seen and rows(seen[0]) == []


def test_svg_charts_escape_names_and_skip_missing_values():
    from backend.reports import svg

    chart = str(
        svg.line_chart(
            [{"name": HOSTILE, "points": [(1, 0.5), (2, float("nan")), (3, None), (4, 0.2)]}],
            title="<b>t</b>",
            y_label="loss",
        )
    )
    assert "<script" not in chart and "&lt;script&gt;" in chart and "&lt;b&gt;t" in chart
    assert "nan" not in chart.lower() and "xmlns" not in chart
    assert svg.line_chart([{"name": "empty", "points": [(1, None)]}], title="t", y_label="y") == ""
    assert svg.nice_ticks(1, 50, min_step=1) == [0, 10, 20, 30, 40, 50]
    assert svg.nice_ticks(1, 2, min_step=1) == [1, 2]


def test_report_writes_accuracies_as_percentages_like_every_page(client, exp):
    """0.5 test accuracy reads 50.0%, as on the run page and in compare, never 0.5000."""
    import re

    html = client.get(f"/experiments/{exp['pretrain']}").text
    row = re.search(rf'<tr data-run-id="{exp["finetune"]}">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', row)
    assert "50.0%" in cells and "0.5000" not in row
    assert all(re.fullmatch(r"\d+\.\d%|–", c) for c in cells[-4:]), cells  # the four scores
    assert "% validation" in html and "'%.0f'" not in html
    chart = re.search(r'<svg[^>]*aria-label="Finetunes: validation[^"]*".*?</svg>', html, re.S)
    assert chart and re.search(r'class="tick" text-anchor="end">\d+(\.\d)?%<', chart.group(0))
