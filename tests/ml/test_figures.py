"""The confusion-matrix picture stays small in memory and on disk up to a thousand classes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from tests.stack import REPO_ROOT, scaled

# Runs in a fresh interpreter so its peak resident memory (VmHWM) is the picture's alone.
MEASURE = """
import json, sys
from pathlib import Path
import numpy as np
from worker.ml.figures import confusion_matrix_png
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.figure(); plt.close("all")  # pay for matplotlib's own start-up before measuring

def hwm():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

n, out = int(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
matrix = rng.integers(0, 50, (n, n))
before = hwm()
confusion_matrix_png(matrix, [f"class-{i}" for i in range(n)], out)
print(json.dumps({"growth_mb": hwm() - before}))
"""


@pytest.mark.parametrize("classes", [150, 1000])
def test_confusion_matrix_memory_is_bounded_up_to_a_thousand_classes(classes, tmp_path):
    out = tmp_path / "cm.png"
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(classes), str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(300),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth = json.loads(done.stdout.strip().splitlines()[-1])["growth_mb"]
    # A figure sized by its class count grew by 2.9 GB for 150 classes.
    assert growth < 150, f"{classes} classes: resident memory grew by {growth:.0f} MiB"
    with Image.open(out) as image:
        assert max(image.size) <= 1200  # 12 inches at 100 dpi
