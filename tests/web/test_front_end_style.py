"""The front end keeps one house style: helpers in dom.js, styles in app.css, Plotly only
where a page draws charts, no inline code."""

from __future__ import annotations

import re

import pytest

from tests.stack import REPO_ROOT

JS = REPO_ROOT / "static" / "js"
TEMPLATES = REPO_ROOT / "templates"
PAGES = [p for p in TEMPLATES.rglob("*.html") if "docs" not in p.parts]  # docs: Swagger/ReDoc
PLOTLY = re.compile(r'<script src="/vendor/plotly\.min\.js\?v=[^"]+" defer></script>')


def test_no_page_script_keeps_its_own_helpers():
    """dom.js holds the one `el`, Plotly config and formatters; page modules use it."""
    for path in sorted(JS.glob("*.js")):
        if path.name in ("dom.js", "swagger-init.js"):
            continue
        text = path.read_text()
        for copy in (
            "const el =",
            "function el(",
            "displaylogo",
            "Plotly.react",
            "toFixed(",
            "toPrecision(",
            "Math.round(",
            "fmtSeconds",
            "padStart(",
            "toLocale",
        ):
            assert copy not in text, f"{path.name} still has its own {copy!r}"
        # new_run.js and runs_view.js (the runs page's URL and saved views) build no nodes
        # and format nothing.
        if path.name not in ("api.js", "new_run.js", "runs_view.js"):
            assert "dom." in text or "= dom;" in text, f"{path.name} does not use dom.js"


def test_styles_live_in_app_css():
    for path in PAGES:
        text = path.read_text()
        assert "<style" not in text, f"{path.name}: a <style> block"
        # The only style attributes left carry values the server computes (bar widths,
        # the samples grid's row size), which no class can hold.
        for attr in re.findall(r'style="([^"]*)"', text):
            assert "{{" in attr, f"{path.name}: style={attr!r} belongs in app.css"


def test_pages_have_no_inline_script():
    for path in PAGES:
        for tag in re.findall(r"<script\b[^>]*>", path.read_text()):
            assert "src=" in tag or 'type="application/json"' in tag, f"{path.name}: {tag}"


def _page_scripts(html: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)"( defer)?></script>', html)


@pytest.mark.parametrize(
    ("path", "charts"),
    [
        ("/runs", False),
        ("/runs/new", False),
        ("/datasets", False),
        ("/compare", False),
        ("/datasets/demo-tiny", True),
    ],
)
def test_plotly_loads_only_on_pages_with_charts(client, path, charts):
    html = client.get(path).text
    assert bool(PLOTLY.search(html)) is charts
    scripts = _page_scripts(html)
    assert all(defer for _, defer in scripts), scripts  # deferred: run in order after parsing
    names = [src.partition("?")[0] for src, _ in scripts]  # versioned: ?v=<hash>
    assert names.index("/static/js/api.js") < names.index("/static/js/dom.js")
    if charts:
        assert names[0] == "/vendor/plotly.min.js"
