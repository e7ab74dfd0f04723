"""Pretraining images among a fine-tune's held-out images: the launch's forecast, the count.

Only a worker sees images. Each fine-tune on a pretrained encoder counts how many of its
validation and test images the pretrain trained on, by comparing the image sets both runs
recorded (`worker/ml/splits.py`, `jobspec/image_sets.py`), and keeps the count in its
training summary (`pretrain_overlap`); the run page shows its warning and the study page
sums them (`study_warnings`).

Before any image is split, a launch can only compare how the splits are drawn: a pretrain
and a fine-tune that draw the same sample (the quick-run size, `max_train_images`) of the
same data set with the same split seed and validation fraction hold out the same images.
Any difference (the issue's case: a quick pretrain of 600 images, a full-size study with the
same seed and fraction) and some of the pretrain's training images are, almost surely,
validation images of the fine-tune. The launch warns then (`launch_warning`) rather than
refusing: test scores are not touched, the exact count follows once the runs have split,
and a study on a quick pretrain is a legitimate first look as long as it says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from store.runs.models import Run


@dataclass(frozen=True)
class SplitDraw:
    """How a run draws its split: split seed (None: each run its own seed), validation
    fraction, and the sample split (None: every training image)."""

    seed: int | None
    fraction: float
    sample: int | None

    def words(self, n_train: int) -> str:
        seed = "each seed its own split" if self.seed is None else f"split seed {self.seed}"
        drawn = (
            f"a quick-run sample of {self.sample:,} of the {n_train:,} training images"
            if self.sample is not None
            else f"all {n_train:,} training images"
        )
        return f"{drawn}, {seed}, {self.fraction:.0%} validation"


def draw_of(params: Mapping[str, Any], n_train: int, *, split_seed: Any = "own") -> SplitDraw:
    """The draw of a run's params (`split_seed` given: the study's, None for per seed)."""
    if split_seed == "own":
        split_seed = params.get("split_seed")
        split_seed = params.get("seed", 0) if split_seed is None else split_seed
    sample = params.get("max_train_images")
    sample = int(sample) if sample is not None and int(sample) < n_train else None
    fraction = float(params.get("validation_fraction", 0.1))
    return SplitDraw(None if split_seed is None else int(split_seed), fraction, sample)


def launch_warning(
    *,
    parent: Run,
    params: Mapping[str, Any],
    split_seed: int | None,
    n_train: int,
    noun: str = "study",
) -> str | None:
    """Why a study's (or, with noun="run", a fine-tune's) validation images will hold some
    of its pretrain's training images (None when both draw the same split of the same
    sample: then they hold none)."""
    theirs = draw_of(parent.params or {}, n_train)
    ours = draw_of(params, n_train, split_seed=split_seed)
    if theirs == ours:
        return None
    return (
        f"Pretrain run #{parent.id} trained on {theirs.words(n_train)}; this {noun} splits "
        f"{ours.words(n_train)}: some of the {noun}'s validation images were training images "
        "of the pretrain, so its validation scores, and the epochs early stopping keeps, are "
        "optimistic (test scores are not affected). Each run counts them exactly once it "
        "has split, and its page says how many."
    )


def run_warning(*, parent: Run, params: Mapping[str, Any], n_train: int) -> str | None:
    """`launch_warning` for one run on its pretrain, by its own split seed (None for a kind
    that holds out no validation images)."""
    if "validation_fraction" not in params:
        return None
    seed = draw_of(params, n_train).seed
    return launch_warning(
        parent=parent, params=params, split_seed=seed, n_train=n_train, noun="run"
    )


def overlap_of(run: Run) -> dict[str, int] | None:
    """A fine-tune's count of its encoder's pretraining images among its validation and
    test images (None: not counted: no pretrain, not finished, or a run from before)."""
    training = (run.result or {}).get("training") or {}
    found = training.get("pretrain_overlap")
    return found if isinstance(found, dict) else None


def study_warnings(runs: Sequence[Run], parent_id: int | None) -> list[str]:
    """The study's runs' counts, one sentence for validation and one for test images."""
    counted = [found for run in runs if (found := overlap_of(run)) is not None]
    out = []
    for held, scores in (
        ("validation", "validation scores, and the epochs early stopping kept, are"),
        ("test", "test scores are"),
    ):
        hit = [found for found in counted if found.get(held, 0) > 0]
        if not hit:
            continue
        seen = sorted(found[held] for found in hit)
        total = max(found.get(f"n_{held}", 0) for found in hit)
        span = f"{seen[0]:,}" if seen[0] == seen[-1] else f"{seen[0]:,} to {seen[-1]:,}"
        pretrain = f"pretrain run #{parent_id}" if parent_id is not None else "their pretrain"
        out.append(
            f"In {len(hit)} of {len(counted)} runs counted, {span} of {total:,} {held} images "
            f"were training images of {pretrain}: their {scores} optimistic."
        )
    return out
