"""No page or script loads anything from another host (no CDN, no web fonts)."""

from __future__ import annotations

import re

from tests.stack import REPO_ROOT

# src/href/url()/import/fetch pointing at an absolute or protocol-relative URL.
OUTSIDE = re.compile(
    r"""(?:src|href|action)\s*=\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//|"""
    r"""(?:import|fetch)\s*\(?\s*["'](?:https?:)?//|@import\s+["'](?:https?:)?//""",
    re.IGNORECASE,
)


def test_templates_and_static_files_refer_to_no_outside_host():
    offenders = []
    for folder in ("templates", "static"):
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.suffix in {".html", ".js", ".css"}:
                for number, line in enumerate(path.read_text().splitlines(), start=1):
                    if OUTSIDE.search(line):
                        offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_pattern_catches_what_it_should():
    assert OUTSIDE.search('<script src="https://cdn.example/plotly.js">')
    assert OUTSIDE.search("<link href='//fonts.example/css'>")
    assert OUTSIDE.search("@import url(https://x.example/a.css)")
    assert not OUTSIDE.search('<script src="/vendor/plotly.min.js">')
