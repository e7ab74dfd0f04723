"""User text reaching a Plotly figure is escaped: Plotly draws a few HTML tags (<a href>,
<b>, <span style>) in legends, axes, titles and hover labels; escaped, they show as written."""

from __future__ import annotations

import json

import pytest

from backend import plotting
from tests.web.factories import finetune_result, make_run

LINK = '<a href="https://example.com">CLICK</a>'
SHOWN = '&lt;a href="https://example.com"&gt;CLICK&lt;/a&gt;'
CLASSES = ["<b>cat</b>", "dog & co"]


def _strings(node):
    """Every string in a figure but the trusted templates (where our own markup lives)."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key not in plotting.TRUSTED_KEYS:
                yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def assert_no_markup(figure: dict) -> None:
    tags = [s for s in _strings(figure) if "<" in s or ">" in s]
    assert tags == [], tags


def test_escape_figure_escapes_text_and_keeps_numbers_and_templates():
    xs = list(range(1000))
    fig = plotting.figure(
        [
            {
                "name": LINK,
                "x": xs,
                "y": ["<i>a</i>", 2],
                "hovertemplate": "%{x}<br>%{y}<extra></extra>",
            }
        ],
        {"title": {"text": "a & <b>b</b>"}, "annotations": [{"text": "<span style='x'>s</span>"}]},
    )
    trace = fig["data"][0]
    assert trace["name"] == SHOWN.replace("&quot;", '"')
    assert trace["x"] is xs  # a plain number array is passed through untouched
    assert trace["y"] == ["&lt;i&gt;a&lt;/i&gt;", 2]
    assert trace["hovertemplate"] == "%{x}<br>%{y}<extra></extra>"
    assert fig["layout"]["title"]["text"] == "a &amp; &lt;b&gt;b&lt;/b&gt;"
    assert_no_markup(fig)


def test_optuna_hover_text_keeps_its_line_breaks_only():
    text = '{"optimizer": "<a href=x>y</a>"}<br>  "number": 3'
    escaped = plotting.text(text, keep_breaks=True)
    assert escaped.count("<br>") == 1 and "<a" not in escaped
    assert plotting.text("a<br>b") == "a&lt;br&gt;b"


@pytest.fixture(scope="module")
def tricky_runs(client):
    metrics = {"finetune/val_accuracy": [0.5, 0.7], "finetune/val_loss": [1.0, 0.8]}
    return [
        make_run(
            "finetune",
            name=name,
            tags=["<i>tag</i>"],
            metrics=metrics,
            result=finetune_result(CLASSES),
        )
        for name in (LINK, "<b>second</b>")
    ]


def test_compare_figures_show_run_and_class_names_as_written(client, tricky_runs):
    a, b = tricky_runs
    data = client.get(f"/api/compare?ids={a},{b}").json()
    figures = [c["figure"] for c in data["curves"]]
    figures += [m["figure"] for m in data["confusion"]["matrices"]]
    figures += [d["figure"] for d in data["confusion"]["differences"] if d["figure"]]
    assert len(figures) >= 4
    for figure in figures:
        assert_no_markup(figure)
    names = [trace["name"] for trace in figures[0]["data"]]
    assert any("&lt;a href=" in name and "CLICK&lt;/a&gt;" in name for name in names)
    assert data["runs"][0]["name"] == LINK  # the JSON itself keeps the name as it is
    assert figures[-1]["data"][0]["x"] == ["&lt;b&gt;cat&lt;/b&gt;", "dog &amp; co"]


def test_compare_page_embeds_escaped_figures(client, tricky_runs):
    a, b = tricky_runs
    html = client.get(f"/compare?ids={a},{b}").text
    assert LINK not in html  # Jinja escapes the page; the figures inside are escaped too
    start = html.index('id="compare-data">') + len('id="compare-data">')
    data = json.loads(html[start : html.index("</script>", start)])
    for item in data["curves"]:
        assert_no_markup(item["figure"])


def test_run_figures_escape_class_names(client, tricky_runs):
    run_id = tricky_runs[0]
    confusion = client.get(f"/api/runs/{run_id}/confusion").json()
    figure = confusion.get("figure", confusion)
    assert_no_markup(figure)
    assert "&lt;b&gt;cat&lt;/b&gt;" in figure["data"][0]["x"]
    curves = client.get(f"/api/runs/{run_id}/curves").json()
    assert_no_markup(curves.get("figure", curves))


def test_optuna_study_plots_show_parameter_values_as_written():
    """Optuna's plots carry parameter names and values in axes, ticks and hover text."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from backend.studies import service as studies_service

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    distributions = {
        "optimizer": CategoricalDistribution([LINK, "<b>sgd</b>"]),
        "learning_rate": FloatDistribution(1e-4, 1e-1, log=True),
    }
    for number in range(6):
        study.add_trial(
            optuna.trial.create_trial(
                params={
                    "optimizer": [LINK, "<b>sgd</b>"][number % 2],
                    "learning_rate": 10 ** -(number % 4 + 1),
                },
                distributions=distributions,
                value=0.1 * number,
                intermediate_values={1: 0.2 * number, 2: 0.1 * number},
            )
        )
    figures, _missing = studies_service.figures(study)
    assert {"history", "slice", "contour"} <= set(figures)
    for figure in figures.values():
        leftovers = [s for s in _strings(figure) if "<" in s.replace("<br>", "")]
        assert leftovers == [], leftovers
    shown = json.dumps(figures)
    assert "&lt;a href=" in shown and "<a href" not in shown


@pytest.mark.parametrize("kind", sorted(plotting.WEBGL_TRACES))
def test_a_webgl_trace_is_refused_before_it_reaches_a_page(kind):
    """WebGL traces need eval (regl), which the pages' CSP blocks: a figure may not use one
    (the learned-features PCA once did: its chart broke the CSP on the run page)."""
    with pytest.raises(ValueError, match="CSP"):
        plotting.figure([{"type": kind, "x": [1], "y": [2]}], {})
    assert plotting.figure([{"type": "scatter", "x": [1], "y": [2]}], {})["data"]
