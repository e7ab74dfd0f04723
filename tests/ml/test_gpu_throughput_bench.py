"""bench/gpu_throughput.py runs on CPU with tiny settings and ends with its JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import scaled

pytestmark = pytest.mark.slow  # trains its models for real

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu_throughput.py"


def test_gpu_throughput_bench_reports_models_modes_and_pipeline_as_json():
    args = ["--batch", "4", "--steps", "1", "--models", "ae01", "--modes", "fp32,mixed"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=scaled(600)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["bench"] == "gpu_throughput"
    assert set(figures["models"]) == {"ae01"}
    for row in figures["models"].values():
        assert row and all(rate > 0 for rate in row.values())
        assert "fp32" in row
        assert ("mixed" in row) != ("mixed" in figures["skipped"])
    if figures["backend"] == "tensorflow":
        assert figures["pipeline"]["plain"] > 0 and figures["pipeline"]["augmented"] > 0
        assert isinstance(figures["pipeline_limits"], bool)
