"""Whether a fine-tune validates on images its pretrained encoder was trained on.

A pretrain records its split (seed, fraction, fingerprint) in pretrain.json. A fine-tune on
that encoder whose validation images were training images of the pretrain gets optimistic
validation scores (the features were fitted to those very images): it is told so here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from worker.ml import artifacts
from worker.ml.datasets.dataset import Dataset, Split


def parent_split(manifest: dict) -> tuple[int, float, str | None]:
    """(seed, fraction, fingerprint) of a pretrain's split; runs from before splits were
    recorded split with their `seed` and have no fingerprint."""
    if "split" in manifest:
        split = manifest["split"]
        return int(split["seed"]), float(split["fraction"]), split["fingerprint"]
    config = manifest["config"]
    seed = config.get("split_seed")
    return int(config["seed"] if seed is None else seed), config["validation_fraction"], None


def pretrain_split_warnings(dataset: Dataset, split: Split, pretrained_dir: Path) -> list[str]:
    """Warnings for the training summary when the encoder's pretrain trained on images this
    run validates on; none when the splits match or the pretrain held them all out."""
    path = Path(pretrained_dir) / "pretrain.json"
    if not path.exists():
        return []
    manifest = artifacts.read_json(path)
    theirs = (manifest.get("dataset") or {}).get("fingerprint")
    if theirs != dataset.fingerprint():
        shown = f"{theirs[:12]}…" if theirs else "unrecorded"
        return [
            f"The encoder was pretrained on another data set (fingerprint {shown}, this run's "
            f"{dataset.fingerprint()[:12]}…), so whether it saw this run's validation or test "
            "images cannot be checked: validation scores may be optimistic."
        ]
    seed, fraction, fingerprint = parent_split(manifest)
    if fingerprint == split.fingerprint:
        return []
    parent = dataset.split_validation(fraction=fraction, seed=seed)
    seen = int(np.setdiff1d(split.val_indices, parent.val_indices).size)
    if seen == 0:  # another split, but every image this run validates on was held out
        return []
    return [
        f"The encoder was pretrained on another train/validation split: {seen} of this run's "
        f"{len(split.val_indices)} validation images were training images of the pretrain, "
        "so validation scores are optimistic."
    ]
