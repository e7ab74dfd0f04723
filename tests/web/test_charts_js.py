"""static/js/charts.js in Node: the EMA the smoothing slider applies, and what transform()
makes of a server figure (raw kept faintly, wall-time x, log y, settings checked on load).
Skipped where no Node is installed (the browser tests drive the same code in Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from backend.runs import figures
from tests.web.test_dom_js import DOM_JS

CHARTS_JS = Path(__file__).resolve().parents[2] / "static" / "js" / "charts.js"
SERIES = {"ae01/loss": [(1, 0.9), (2, 0.5), (3, 0.7), (4, 0.3)]}
WALL = {"ae01/loss": [0.0, 30.0, 60.0, 600.0]}

JS_SIDE = """
const fig = FIGURE;
const store = {};
window.localStorage = { getItem: (k) => store[k] ?? null, setItem: (k, v) => { store[k] = v; } };
const out = {
  ema: charts.ema([2, 2, 2, null, 2], 0.9),
  first: charts.ema([1, 3], 0.5),
  smoothed: charts.transform(fig, { smooth: 0.5, x: "epoch", logy: false, hidden: [] }),
  wall: charts.transform(fig, { smooth: 0, x: "wall", logy: true, hidden: [] }),
  unchanged: fig.data[0].x,
};
store["stacklab.charts.run"] = JSON.stringify(
  { smooth: 7, x: "sideways", logy: "yes", hidden: [1, "ae01/loss"] });
out.loaded = charts.load("run");
"""


def run_js(figure: dict) -> dict:
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("no node")
    prelude = "globalThis.window = globalThis; globalThis.document = undefined;\n"
    script = (
        prelude
        + DOM_JS.read_text()
        + CHARTS_JS.read_text()
        + JS_SIDE.replace("FIGURE", json.dumps(figure))
        + "console.log(JSON.stringify(out));"
    )
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def js() -> dict:
    figure = figures.curves_figure(SERIES, wall=WALL, best_epoch=2, best_stage="ae01")
    return run_js(figure)


def test_ema_is_debiased_and_keeps_gaps(js):
    smoothed = js["ema"]
    assert smoothed[3] is None  # a gap stays a gap
    assert [smoothed[i] for i in (0, 1, 2, 4)] == pytest.approx([2, 2, 2, 2])  # no pull to 0
    assert js["first"] == pytest.approx([1, (0.5 * 0.5 + 0.5 * 3) / 0.75])


def test_smoothing_keeps_the_raw_series_faintly_behind(js):
    raw, smooth = js["smoothed"]["data"]
    assert raw["opacity"] == 0.25 and raw["showlegend"] is False and raw["name"].endswith("(raw)")
    assert raw["y"] == [0.9, 0.5, 0.7, 0.3] and smooth["y"] != raw["y"]
    assert js["unchanged"] == [1, 2, 3, 4]  # the server's figure is left as it was


def test_wall_time_moves_x_and_the_best_epoch_line_and_log_y(js):
    layout = js["wall"]["layout"]
    [trace] = js["wall"]["data"]
    assert trace["x"] == pytest.approx([0, 0.5, 1, 10])  # minutes: the longest is 10 min
    assert trace["customdata"] == [1, 2, 3, 4] and "min" in trace["hovertemplate"]
    assert "wall time (min" in layout["xaxis"]["title"]["text"]
    [line] = [s for s in layout["shapes"] if s.get("xref") == "x"]
    assert line["x0"] == line["x1"] == pytest.approx(0.5)  # epoch 2 ended at 30 s
    assert layout["yaxis"]["type"] == "log"


def test_kept_settings_are_checked_when_read(js):
    assert js["loaded"] == {"smooth": 0.99, "x": "epoch", "logy": False, "hidden": ["ae01/loss"]}
