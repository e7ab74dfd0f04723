"""static/js/dom.js formats numbers, durations and times exactly as the server's Python does.

Jinja renders a table's first state and the page's script re-renders it on every poll, so a
cell must read the same either way. Each sample goes through the Python side (the page
helpers, Jinja filters as the templates use them) and through dom.js in Node (or, without
Node, headless Chromium), and the two texts must be equal.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import jinja2
import pytest

from tests.stack import REPO_ROOT, scaled

DOM_JS = REPO_ROOT / "static" / "js" / "dom.js"
JINJA = jinja2.Environment()

# Sample tables: exact ties (0.125, 2.5, 99999.5), zeros, tiny, huge and special values.
# fmt: off
NUMBERS = [
    0.0, -0.0, 0.125, 0.375, -0.125, 0.5, 1.5, 2.5, -2.5, 0.45, 0.55, 2.675, 1 / 3, 2 / 3,
    0.00005, 5e-5, 0.99995, 1.00005, 12.34567, 123456.789, 1e-7, -1e-7, 12000.0, 99999.5,
    999995.0, 1.5e-7, 123456789.0, 0.0001, 0.00001234567, -2.5e-5, 1e21, 1.2345e22, 1e100,
    1e-320, 7, -3, math.inf, -math.inf, math.nan,
]
DURATIONS = [
    None, math.nan, 0, 0.4, 0.5, 1.5, 2.5, 59.5, 60, 61, 119.5, 3599.5, 3600, 3725, 86399.6,
    90061, -5, -0.4, -3600.5, 1e9, 12.345, 7200, 3540,
]
VALUES = [  # no whole floats: JSON hands JS 3.0 as 3, which dom.fmt.py shows as the int
    None, True, False, "adam", 3, -12, 10**17, 0.001, 1e-5, 5.3e-05, 0.0001, 0.00023, 1 / 3,
    -2.5, 123456.789, 1.5e-16, 2.5e-300, -7.5e-8, 0.1 + 0.2,
]
MOMENTS = [
    None, "", "2024-05-01T12:34:56.789+00:00", "2023-12-31T23:59:00+00:00", "2024-01-02T03:04",
]
# fmt: on


def _fmt(template: str, value) -> str:
    return JINJA.from_string(template).render(v=value)


def _python_side() -> dict[str, list]:
    from backend.formatting import fmt_duration, fmt_when
    from backend.groups.verdict import format_p

    finite = [v for v in NUMBERS if math.isfinite(v)]
    return {
        "duration": [fmt_duration(v) for v in DURATIONS],
        "when": [fmt_when(v) for v in MOMENTS],
        "py": [_fmt("{{ v }}", v) for v in VALUES],
        "stamp": [_fmt('{{ v[:19]|replace("T", " ") }}', v) for v in MOMENTS if v],
        # '%.4f'|format(v) in the runs table and a run's page, '%.3f' per class, '%.1f s'
        # for study trials, "%.5g" for study values, v|round|int for counts and percents.
        **{
            f"fixed{n}": [_fmt(f"{{{{ '%.{n}f'|format(v) }}}}", v) for v in NUMBERS]
            for n in (0, 1, 3, 4)
        },
        "general5": [_fmt("{{ '%.5g'|format(v) }}", v) for v in NUMBERS],
        "int": [_fmt("{{ v|round|int }}", v) for v in finite if abs(v) < 1e15],
        "pct": [f"{v:.1%}" for v in NUMBERS],
        "pValue": [format_p(v) for v in (0.0005, 0.001, 0.0125, 0.5, 0.0015, 0.9995, 0.0625)],
        "mib": [
            _fmt("{{ (v / 1048576)|round(1) }} MiB", v)
            for v in (0, 1, 52428, 104857, 1048576, 1572864, 123456789, 5 * 2**30)
        ],
    }


def _encode(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return {"special": str(value)}
    if isinstance(value, float) and value == 0 and math.copysign(1, value) < 0:
        return {"special": "-0"}
    return value


JS_SIDE = """
const decode = (v) => (v && v.special !== undefined
  ? { nan: NaN, inf: Infinity, "-inf": -Infinity, "-0": -0 }[v.special] : v);
const s = SAMPLES, d = (xs) => xs.map(decode);
const nums = d(s.numbers), finite = nums.filter((v) => Number.isFinite(v));
const out = {
  duration: d(s.durations).map(dom.fmt.duration),
  when: s.moments.map(dom.fmt.when),
  py: s.values.map(dom.fmt.py),
  stamp: s.moments.filter(Boolean).map(dom.fmt.stamp),
  fixed0: nums.map((v) => dom.fmt.fixed(v, 0)),
  fixed1: nums.map((v) => dom.fmt.fixed(v, 1)),
  fixed3: nums.map((v) => dom.fmt.fixed(v, 3)),
  fixed4: nums.map((v) => dom.fmt.fixed(v, 4)),
  general5: nums.map((v) => dom.fmt.general(v, 5)),
  int: finite.filter((v) => Math.abs(v) < 1e15).map(dom.fmt.int),
  pct: nums.map((v) => dom.fmt.pct(v)),
  pValue: [0.0005, 0.001, 0.0125, 0.5, 0.0015, 0.9995, 0.0625].map(dom.fmt.pValue),
  mib: [0, 1, 52428, 104857, 1048576, 1572864, 123456789, 5 * 2 ** 30].map(dom.fmt.mib),
};
"""


def _samples_js() -> str:
    samples = {
        "numbers": [_encode(v) for v in NUMBERS],
        "durations": [_encode(v) for v in DURATIONS],
        "moments": MOMENTS,
        "values": VALUES,
    }
    return f"const SAMPLES = {json.dumps(samples)};\n"


def _run_in_node(node: str) -> dict:
    script = DOM_JS.read_text() + _samples_js() + JS_SIDE + "console.log(JSON.stringify(out));"
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=scaled(120))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _run_in_chromium() -> dict:
    from tests.browser.chromium import CHROMIUM

    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.os.path.exists(CHROMIUM):
        pytest.skip("neither node nor chromium is installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            body = DOM_JS.read_text() + _samples_js() + JS_SIDE + "return out;"
            return page.evaluate(f"() => {{ {body} }}")
        finally:
            browser.close()


@pytest.fixture(scope="module")
def js_side() -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    return _run_in_node(node) if node else _run_in_chromium()


FORMATS = ["duration", "when", "stamp", "py", "fixed0", "fixed1", "fixed3", "fixed4", "general5"]
FORMATS += ["int", "pct", "pValue", "mib"]


@pytest.mark.parametrize("name", FORMATS)
def test_dom_js_formats_like_the_server(js_side, name):
    python = _python_side()[name]
    assert js_side[name] == python


def test_the_samples_cover_the_cases_where_js_and_python_used_to_differ():
    from backend.formatting import fmt_duration

    # JS's toFixed and Math.round round an exact tie up, Python to even; the old JS
    # duration had no zero padding; toPrecision(5) then stripping zeros turned 12000 into 12.
    assert (0.125).__format__(".2f") == "0.12" and _fmt("{{ v|round|int }}", 12.5) == "12"
    assert fmt_duration(3725) == "1h 02m" and fmt_duration(2.5) == "2s"
    assert _fmt("{{ '%.5g'|format(v) }}", 12000.0) == "12000"
