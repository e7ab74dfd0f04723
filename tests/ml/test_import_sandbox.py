"""The import parser's child process: budgets of memory and time, and what it imports."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.stack import REPO_ROOT, scaled
from worker.import_sandbox import Budget, ImportFailed, parse_in_child
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.limits import ImportLimits

ONE = np.zeros((1, 32, 32, 3), np.uint8)


def label_bomb(path: Path) -> Path:
    """A few KB: one label 2**40 and no class names (names '0'..'2**40' were built)."""
    np.savez(path, x_train=ONE, y_train=np.array([2**40]), x_test=ONE, y_test=np.array([0]))
    return path


def zeros_bomb(path: Path, images: int = 400_000) -> Path:
    """About 1 MB on disk, 1.2 GB of pixels once read (built without holding them)."""
    from tests.ml.hostile_corpus import zeros_npz

    return zeros_npz(path, images)


zeros_npz = zeros_bomb


def slow_zip(path: Path, images: int = 54, side: int = 6000) -> Path:
    """A 2 MB image folder of 36-megapixel PNGs: seconds of decoding, little memory each."""
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, format="PNG", compress_level=9)
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(images):
            archive.writestr(f"train/a/{i}.png", buffer.getvalue())
        archive.writestr("test/a/0.png", buffer.getvalue())
    return path


def small_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8),
        y_train=np.arange(12) % 3,
        x_test=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        y_test=np.arange(3),
    )
    return path


def hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_valid_file_comes_back_as_a_dataset_with_its_peak_memory(tmp_path):
    parsed = parse_in_child(
        str(small_npz(tmp_path / "ok.npz")), work_dir=tmp_path / "out", budget=Budget(512, 60)
    )
    # the summary comes back in the outcome; the arrays stay in the file (never loaded here)
    assert parsed.summary["n_train"] == 12 and parsed.summary["num_classes"] == 3
    assert parsed.arrays == tmp_path / "out" / "result.npz" and parsed.arrays.is_file()
    assert 0 < parsed.peak_rss_mb < parsed.peak_vm_mb < 512


def test_a_result_that_does_not_match_its_summary_fails_the_import(tmp_path, monkeypatch):
    from worker import import_sandbox

    real = import_sandbox._outcome

    def lying(path):
        outcome = real(path)
        outcome["summary"]["n_train"] = 10**9  # a child gone wrong: the headers say 12
        return outcome

    monkeypatch.setattr(import_sandbox, "_outcome", lying)
    with pytest.raises(ImportFailed, match="result does not check out"):
        parse_in_child(
            str(small_npz(tmp_path / "ok.npz")), work_dir=tmp_path / "out", budget=Budget(512, 60)
        )


def test_the_output_budgets_refuse_before_the_memory_budget_is_reached(tmp_path):
    before = hwm_mb()
    with pytest.raises(DataError, match=r"400,000 images, more than the 120,000 allowed"):
        parse_in_child(
            str(zeros_npz(tmp_path / "zeros.npz")),
            work_dir=tmp_path / "out",
            budget=Budget(512, 60),
        )
    assert hwm_mb() - before < 50


def test_a_label_bomb_hits_the_memory_budget_in_the_child_only(tmp_path):
    before = hwm_mb()
    with pytest.raises(ImportFailed) as caught:
        parse_in_child(
            str(label_bomb(tmp_path / "bomb.npz")),
            work_dir=tmp_path / "out",
            budget=Budget(512, 60),
            limits=ImportLimits(max_classes=2**62),  # no class limit: only the budget stops it
        )
    assert str(caught.value) == (
        "the import needed more than 512 MiB of memory (STACKLAB_IMPORT_MEMORY_MB)"
    )  # not the 60 s time budget's message: memory stopped it first
    assert hwm_mb() - before < 50  # in-process it grew to 19 GB


def test_a_decompression_bomb_hits_the_memory_budget(tmp_path):
    with pytest.raises(ImportFailed, match="more than 512 MiB of memory"):
        parse_in_child(
            str(zeros_npz(tmp_path / "zeros.npz")),
            work_dir=tmp_path / "out",
            budget=Budget(512, 60),
            # no output budgets: only the memory budget stops it
            limits=ImportLimits(max_images=2**40, max_decoded_bytes=2**50),
        )


def test_a_slow_file_is_stopped_at_the_time_budget(tmp_path):
    # The file is valid and parses in seconds: only a budget enforced while it runs stops it
    # (a late check would return its data set), however slow the machine.
    with pytest.raises(ImportFailed) as caught:
        parse_in_child(
            str(slow_zip(tmp_path / "slow.zip")),
            work_dir=tmp_path / "out",
            budget=Budget(768, 1.5),
            resize=True,
        )
    assert "took longer than 1.5 s" in str(caught.value)
    assert "STACKLAB_IMPORT_TIMEOUT_SECONDS" in str(caught.value)


def test_the_files_fault_comes_back_as_a_data_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="bad.zip"):
        parse_in_child(str(bad), work_dir=tmp_path / "out", budget=Budget(512, 60))


def test_a_beat_that_fails_stops_the_child(tmp_path):
    def beat() -> None:
        raise RuntimeError("not ours any more")

    # The valid file would come back as a data set within the 60 s budget: the error shows
    # the failed beat stopped the child while it parsed.
    with pytest.raises(RuntimeError, match="not ours"):
        parse_in_child(
            str(slow_zip(tmp_path / "slow.zip")),
            work_dir=tmp_path / "out",
            budget=Budget(768, 60),
            resize=True,
            beat=beat,
            beat_every=0.2,
        )


CHILD_MODULES = """
import json, sys
from worker.import_sandbox import main
main(sys.argv[1])
heavy = ("tensorflow", "keras", "torch", "jax", "sqlalchemy", "celery", "backend", "fastapi")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_the_child_imports_no_framework(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    request = {
        "spec": str(small_npz(tmp_path / "ok.npz")),
        "work_dir": str(out),
        "resize": False,
        "limits": None,
        "memory_bytes": 512 << 20,
        "cpu_seconds": 60,
        "parent_pid": os.getpid(),  # the child below is ours
    }
    (out / "request.json").write_text(json.dumps(request))
    done = subprocess.run(
        [sys.executable, "-c", CHILD_MODULES, str(out / "request.json")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert json.loads((out / "outcome.json").read_text())["ok"] is True
