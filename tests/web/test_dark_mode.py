"""Dark mode is the stylesheet's variables redefined (static/css/app.css): so every colour the
pages use is a variable, named in the light :root block and redefined in the dark one, and no
rule, template or script names a colour of its own (it would stay light in dark mode).
"""

from __future__ import annotations

import re

from tests.stack import REPO_ROOT

CSS = (REPO_ROOT / "static" / "css" / "app.css").read_text()
COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}\b|\brgba?\(|\bhsla?\(")
DARK = "@media (prefers-color-scheme: dark)"
PAGE_SET = {"--tile-row", "--tile-gap"}  # sizes a page sets (templates/datasets/detail.html)


def _blocks() -> tuple[str, str, str]:
    """The light :root block, the dark one, and the rest of the stylesheet."""
    light_at = CSS.index(":root {")
    light_end = CSS.index("\n}\n", light_at) + 3
    dark_at = CSS.index(DARK, light_end)
    dark_end = CSS.index("\n}\n", dark_at) + 3
    rest = CSS[:light_at] + CSS[light_end:dark_at] + CSS[dark_end:]
    return CSS[light_at:light_end], CSS[dark_at:dark_end], rest


def _defined(block: str) -> set[str]:
    return set(re.findall(r"(--[\w-]+)\s*:", block))


def test_every_colour_is_a_variable_that_dark_mode_redefines():
    light, dark, rest = _blocks()
    literals = [line.strip() for line in rest.splitlines() if COLOUR.search(line)]
    assert literals == [], "colours outside the variables break in dark mode"
    colours = {name for name in _defined(light) if COLOUR.search(light.split(name + ":")[1][:40])}
    assert colours and colours <= _defined(dark), sorted(colours - _defined(dark))
    used = set(re.findall(r"var\((--[\w-]+)", rest))
    assert used <= _defined(light) | PAGE_SET, sorted(used - _defined(light) - PAGE_SET)


def test_no_template_or_script_names_a_colour():
    found = []
    for folder, pattern in (("templates", "**/*.html"), ("static/js", "*.js")):
        for path in (REPO_ROOT / folder).glob(pattern):
            if path.name.startswith("swagger"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if COLOUR.search(re.sub(r'href="#[^"]*"|&#\w+;', "", line)):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()[:80]}")
    assert found == []


def test_the_skip_link_comes_first_and_targets_the_content():
    base = (REPO_ROOT / "templates" / "base.html").read_text()
    body = base[base.index("<body>") :]
    first = re.search(r"<(\w+)[^>]*>", body[len("<body>") :])
    assert first is not None and 'class="skip-link" href="#content"' in first.group(0)
    assert '<main class="page" id="content"' in body
