"""Which images a run used, and whether a fine-tune's encoder was trained on its held-out ones.

Every pretrain and fine-tune records its image sets (`image_sets.json`: the indices it
trained on, quick-run sample included, validated on and, for a fine-tune, was tested on;
`jobspec.image_sets`). A fine-tune on a pretrained encoder compares the pretrain's training
set with its own validation and test sets, image by image: images the encoder was fitted
to make validation scores (and the epoch early stopping keeps) optimistic. The count goes
into the training summary (`pretrain_overlap`) with a warning, which the run and study
pages show. Pretrains from before image sets were recorded are checked by re-making their
split from their manifest (seed, fraction and quick-run size), checked by its fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobspec.image_sets import ImageSet, ImageSetError, Part, SetName
from worker.ml import artifacts
from worker.ml.datasets.dataset import Dataset, Split

IMAGE_SETS = "image_sets.json"


def _bitmap_set(part: Part, size: int, indices: np.ndarray) -> ImageSet:
    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return ImageSet(part, size, np.packbits(mask, bitorder="little").tobytes())


def image_sets(
    dataset: Dataset, split: Split, *, max_images: int | None, tested: bool
) -> dict[SetName, ImageSet]:
    """The images a run trains on (the split's training part of its quick-run sample, or of
    every training image), validates on and, when `tested`, is tested on (every test image)."""
    pool = dataset.sample_train(max_images, seed=split.seed)  # as split_validation drew it
    trained = np.setdiff1d(pool, split.val_indices)
    if len(trained) != len(split.y_train):
        raise RuntimeError(f"the split trains on {len(split.y_train)} images, not {len(trained)}")
    n_train = len(dataset.y_train)
    sets = {
        SetName.TRAIN: _bitmap_set(Part.TRAIN, n_train, trained),
        SetName.VALIDATION: _bitmap_set(Part.TRAIN, n_train, split.val_indices),
    }
    if tested:
        n_test = len(dataset.y_test)
        sets[SetName.TEST] = _bitmap_set(Part.TEST, n_test, np.arange(n_test))
    return sets


def image_sets_record(dataset: Dataset, sets: dict[SetName, ImageSet]) -> dict[str, Any]:
    """The data set's fingerprint and each set, encoded (JSON-able)."""
    return {
        "dataset": dataset.fingerprint(),
        "sets": {name.value: found.encode() for name, found in sets.items()},
    }


def write_image_sets(out_dir: Path, dataset: Dataset, sets: dict[SetName, ImageSet]) -> Path:
    """image_sets.json: `image_sets_record`."""
    return artifacts.write_json(Path(out_dir) / IMAGE_SETS, image_sets_record(dataset, sets))


def digests(sets: dict[SetName, ImageSet]) -> dict[str, Any]:
    """Each set's size and digest, for a run's summary (the sets themselves are a file)."""
    return {name.value: {"count": s.count, "digest": s.digest} for name, s in sets.items()}


def read_image_sets(folder: Path, dataset: Dataset) -> dict[SetName, ImageSet] | None:
    """A run's recorded sets (image_sets.json) on this data set; None when it has none."""
    path = Path(folder) / IMAGE_SETS
    return decode_image_sets(artifacts.read_json(path), dataset) if path.exists() else None


def decode_image_sets(record: Any, dataset: Dataset) -> dict[SetName, ImageSet] | None:
    """The sets of an `image_sets_record` on this data set (None: none, or other data).
    Each is read at most as large as this data set's arrays (ImageSetError otherwise)."""
    if not isinstance(record, dict) or record.get("dataset") != dataset.fingerprint():
        return None
    sizes = {Part.TRAIN: len(dataset.y_train), Part.TEST: len(dataset.y_test)}
    parts = {SetName.TRAIN: Part.TRAIN, SetName.VALIDATION: Part.TRAIN, SetName.TEST: Part.TEST}
    stored = record.get("sets") or {}
    if not isinstance(stored, dict):
        raise ImageSetError("the image sets are not a mapping of set names")
    return {
        name: ImageSet.decode(stored[name.value], part=part, size=sizes[part])
        for name, part in parts.items()
        if name.value in stored
    }


def parent_split(manifest: dict) -> tuple[int, float, str | None]:
    """(seed, fraction, fingerprint) of a pretrain's split; runs from before splits were
    recorded split with their `seed` and have no fingerprint."""
    if "split" in manifest:
        split = manifest["split"]
        return int(split["seed"]), float(split["fraction"]), split["fingerprint"]
    config = manifest["config"]
    seed = config.get("split_seed")
    return int(config["seed"] if seed is None else seed), config["validation_fraction"], None


@dataclass
class PretrainCheck:
    """What a fine-tune learns about its encoder's pretrain: warnings for its summary, and
    how many of its validation and test images the pretrain trained on (None: unchecked)."""

    warnings: list[str] = field(default_factory=list)
    overlap: dict[str, int] | None = None


def _pretrain_training(dataset: Dataset, manifest: dict, folder: Path) -> ImageSet | None:
    """The pretrain's training images: recorded (in its manifest, which its children fetch,
    or beside it), or its split made again (None when that split no longer comes out as it
    recorded it)."""
    recorded = decode_image_sets(manifest.get("image_sets"), dataset)
    recorded = recorded or read_image_sets(folder, dataset)
    if recorded and SetName.TRAIN in recorded:
        return recorded[SetName.TRAIN]
    seed, fraction, fingerprint = parent_split(manifest)
    max_images = (manifest.get("config") or {}).get("max_train_images")
    split = dataset.split_validation(fraction=fraction, seed=seed, max_images=max_images)
    if fingerprint is not None and fingerprint != split.fingerprint:
        return None
    return image_sets(dataset, split, max_images=max_images, tested=False)[SetName.TRAIN]


def check_pretrain(
    dataset: Dataset, sets: dict[SetName, ImageSet], pretrained_dir: Path
) -> PretrainCheck:
    """How many of this run's validation and test images its encoder's pretrain trained on."""
    path = Path(pretrained_dir) / "pretrain.json"
    if not path.exists():
        return PretrainCheck()
    manifest = artifacts.read_json(path)
    theirs = (manifest.get("dataset") or {}).get("fingerprint")
    if theirs != dataset.fingerprint():
        shown = f"{theirs[:12]}…" if theirs else "unrecorded"
        return PretrainCheck(
            [
                f"The encoder was pretrained on another data set (fingerprint {shown}, this run's "
                f"{dataset.fingerprint()[:12]}…), so whether it saw this run's validation or test "
                "images cannot be checked: validation scores may be optimistic."
            ]
        )
    try:
        trained = _pretrain_training(dataset, manifest, Path(pretrained_dir))
    except ImageSetError as err:
        trained, why = None, str(err)
    else:
        why = "its split no longer comes out as it recorded it"
    if trained is None:
        return PretrainCheck(
            [
                f"Which images the encoder's pretrain trained on cannot be read ({why}), so "
                "whether it saw this run's validation or test images is unknown."
            ]
        )
    return _compare(trained, sets)


def _compare(trained: ImageSet, sets: dict[SetName, ImageSet]) -> PretrainCheck:
    check = PretrainCheck(overlap={"pretrain_images": trained.count})
    for name in (SetName.VALIDATION, SetName.TEST):
        mine = sets.get(name)
        if mine is None:
            continue
        seen = trained.overlap(mine)
        assert check.overlap is not None
        check.overlap |= {name.value: seen, f"n_{name.value}": mine.count}
        if not seen:
            continue
        if name == SetName.VALIDATION:
            check.warnings.append(
                "The encoder was pretrained on another train/validation split: "
                f"{seen} of this run's {mine.count} validation images were training images "
                "of the pretrain, so validation scores are optimistic."
            )
        else:
            check.warnings.append(
                f"{seen} of this run's {mine.count} test images were training images of the "
                "encoder's pretrain, so test scores are optimistic."
            )
    return check


def pretrain_split_warnings(dataset: Dataset, split: Split, pretrained_dir: Path) -> list[str]:
    """The warnings of `check_pretrain` for a split's validation images alone."""
    n_train = len(dataset.y_train)
    sets = {SetName.VALIDATION: _bitmap_set(Part.TRAIN, n_train, split.val_indices)}
    return check_pretrain(dataset, sets, pretrained_dir).warnings
