"""Files a job leaves behind: weights, full models, metrics tables, pictures."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np

# Registers RandomAugment so .keras files that contain it load back.
from worker.ml import augment as _augment  # noqa: F401
from worker.ml.atomic import atomic_write


def save_model(model: keras.Model, out_dir: Path, name: str) -> list[Path]:
    """Write `<name>.weights.h5` and `<name>.keras`, each whole or not at all."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".saving-") as staging:
        for suffix, writer in ((".weights.h5", model.save_weights), (".keras", model.save)):
            staged = Path(staging) / f"{name}{suffix}"
            writer(staged)
            target = out_dir / staged.name
            os.replace(staged, target)
            paths.append(target)
    return paths


def load_model(path: str | Path) -> keras.Model:
    """Load a full `.keras` model written by save_model."""
    return keras.saving.load_model(path, compile=False)


def load_weights(model: keras.Model, path: str | Path) -> keras.Model:
    """Load `.weights.h5` into a model of the same architecture."""
    model.load_weights(path)
    return model


def write_json(path: Path, payload: dict) -> Path:
    """Pretty JSON, atomically."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=_jsonable)
    with atomic_write(path) as fh:
        fh.write(text.encode())
    return path


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def write_metrics_csv(path: Path, rows: Iterable[dict]) -> Path:
    """Long-format metrics: one row per (stage, epoch, key, value)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["stage", "epoch", "key", "value"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def history_rows(stage: str, history: dict[str, list[float]]) -> list[dict]:
    """Keras history as long-format rows."""
    return [
        {"stage": stage, "epoch": epoch, "key": key, "value": value}
        for key, values in history.items()
        for epoch, value in enumerate(values, start=1)
    ]


def read_json(path: Path) -> dict:
    """JSON written by write_json."""
    return json.loads(Path(path).read_text())
