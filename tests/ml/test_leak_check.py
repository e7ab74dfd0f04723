"""The pretraining leak check compares image sets (worker/ml/splits.py), and class weights
come from the training part (issue 23, points 1 and 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jobspec.image_sets import Part, SetName
from jobspec.params import FinetuneConfig
from worker.ml import artifacts
from worker.ml.datasets.dataset import Dataset
from worker.ml.finetune import finetune, part_class_weights
from worker.ml.splits import (
    check_pretrain,
    image_sets,
    image_sets_record,
    read_image_sets,
    write_image_sets,
)

COUNTS = [600, 400, 300, 250, 200, 150, 100, 80, 70, 50]  # 2,200 imbalanced training images


@pytest.fixture(scope="module")
def imbalanced() -> Dataset:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), COUNTS)
    return Dataset(
        name="imbalanced",
        x_train=rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8),
        y_train=y,
        x_test=rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
        y_test=np.repeat(np.arange(10), 10),
        class_names=tuple(f"c{i}" for i in range(10)),
        source="test",
    )


def _pretrain_folder(path, dataset, *, seed, fraction, max_images, record_sets="manifest"):
    """What a pretrain leaves for its fine-tunes: its manifest, with its image sets in it
    (what a child fetches) or beside it, or (older runs) none."""
    split = dataset.split_validation(fraction=fraction, seed=seed, max_images=max_images)
    config = {"seed": seed, "validation_fraction": fraction, "max_train_images": max_images}
    manifest = {
        "config": config,
        "dataset": {"fingerprint": dataset.fingerprint()},
        "split": split.record(),
    }
    path.mkdir()
    sets = image_sets(dataset, split, max_images=max_images, tested=False)
    if record_sets == "manifest":
        manifest["image_sets"] = image_sets_record(dataset, sets)
    if record_sets == "file":
        write_image_sets(path, dataset, sets)
    artifacts.write_json(path / "pretrain.json", manifest)
    return split


def _by_hand(dataset, *, seed, fraction, max_images, study_val):
    """The overlap with plain Python sets: the quick pretrain's sample less its validation
    part, against the study's validation images."""
    pool = set(dataset.sample_train(max_images, seed=seed).tolist())
    pretrain_val = dataset.split_validation(fraction=fraction, seed=seed, max_images=max_images)
    return len((pool - set(pretrain_val.val_indices.tolist())) & set(study_val.tolist()))


@pytest.mark.parametrize("record_sets", ["manifest", "file", None])
def test_a_quick_pretrain_and_a_full_study_with_one_seed_are_counted(
    imbalanced, tmp_path, record_sets
):
    """The issue's case: same seed and fraction, quick pretrain (600), full-size study."""
    _pretrain_folder(
        tmp_path / "p", imbalanced, seed=0, fraction=0.1, max_images=600, record_sets=record_sets
    )
    study = imbalanced.split_validation(fraction=0.1, seed=0)
    sets = image_sets(imbalanced, study, max_images=None, tested=True)
    want = _by_hand(imbalanced, seed=0, fraction=0.1, max_images=600, study_val=study.val_indices)
    assert want > 0  # the old check (seed and fraction equal) said nothing
    check = check_pretrain(imbalanced, sets, tmp_path / "p")
    assert check.overlap == {
        "pretrain_images": 540,
        "validation": want,
        "n_validation": 220,
        "test": 0,
        "n_test": 100,
    }
    assert check.warnings == [
        "The encoder was pretrained on another train/validation split: "
        f"{want} of this run's 220 validation images were training images of the pretrain, "
        "so validation scores are optimistic."
    ]


def test_the_pretrains_own_split_and_sample_overlap_nothing(imbalanced, tmp_path):
    split = _pretrain_folder(tmp_path / "p", imbalanced, seed=2, fraction=0.1, max_images=600)
    sets = image_sets(imbalanced, split, max_images=600, tested=True)
    check = check_pretrain(imbalanced, sets, tmp_path / "p")
    assert check.warnings == [] and check.overlap is not None
    assert check.overlap["validation"] == 0 and check.overlap["n_validation"] == 60


def test_the_recorded_sets_are_the_sample_less_validation_and_every_test_image(
    imbalanced, tmp_path
):
    split = imbalanced.split_validation(fraction=0.25, seed=1, max_images=400)
    sets = image_sets(imbalanced, split, max_images=400, tested=True)
    write_image_sets(tmp_path, imbalanced, sets)
    read = read_image_sets(tmp_path, imbalanced)
    assert read == sets
    pool = set(imbalanced.sample_train(400, seed=1).tolist())
    assert set(sets[SetName.TRAIN].indices()) == pool - set(split.val_indices.tolist())
    assert sets[SetName.VALIDATION].indices() == sorted(split.val_indices.tolist())
    assert sets[SetName.TEST].part == Part.TEST and sets[SetName.TEST].count == 100
    stored = json.loads((tmp_path / "image_sets.json").read_text())
    assert stored["dataset"] == imbalanced.fingerprint()
    assert sum(len(s["bitmap"]) for s in stored["sets"].values()) < 1500


def test_a_tampered_pretrain_record_is_said_unreadable(imbalanced, tmp_path):
    _pretrain_folder(tmp_path / "p", imbalanced, seed=0, fraction=0.1, max_images=600)
    manifest = json.loads((tmp_path / "p" / "pretrain.json").read_text())
    split = imbalanced.split_validation(fraction=0.1, seed=0)
    ours = image_sets(imbalanced, split, max_images=None, tested=True)
    counted = manifest["image_sets"]["sets"]["train"] | {"count": 1}
    for tampered in ({"train": counted}, ["train"], "train"):  # a wrong count, not a mapping
        manifest["image_sets"]["sets"] = tampered
        (tmp_path / "p" / "pretrain.json").write_text(json.dumps(manifest))
        check = check_pretrain(imbalanced, ours, tmp_path / "p")
        assert check.overlap is None
        assert check.warnings[0].startswith("Which images the encoder's pretrain trained on")


def test_class_weights_come_from_the_training_part():
    # 3 of class 0, 1 of class 1, none of class 2: n / (present classes x count)
    weights = part_class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0, 2: 1.0})
    from sklearn.utils.class_weight import compute_class_weight

    y = np.repeat(np.arange(4), [50, 20, 7, 3])
    want = compute_class_weight("balanced", classes=np.arange(4), y=y)
    assert list(part_class_weights(y, 4).values()) == pytest.approx(list(want))


@pytest.mark.slow
def test_a_finetune_weights_its_classes_by_the_training_part_and_records_its_sets(
    imbalanced, tmp_path, monkeypatch
):
    from worker.ml import finetune as module

    seen = {}

    def fit(model, **kwargs):
        seen["class_weight"] = kwargs["class_weight"]
        return real_fit(model, **kwargs)

    real_fit = module.fit
    monkeypatch.setattr(module, "fit", fit)
    config = FinetuneConfig(
        encoder="scratch",
        architecture="single",
        epochs=1,
        batch_size=64,
        class_weights=True,
        max_train_images=300,
        validation_fraction=0.2,
    )
    result = finetune(imbalanced, config, out_dir=tmp_path)
    split = imbalanced.split_validation(fraction=0.2, seed=0, max_images=300)
    assert seen["class_weight"] == pytest.approx(part_class_weights(split.y_train, 10))
    assert seen["class_weight"] != pytest.approx(imbalanced.class_weights())
    sets = read_image_sets(tmp_path, imbalanced)
    assert sets is not None and sets[SetName.TRAIN].count == len(split.y_train)
    assert result.training["image_sets"]["validation"]["count"] == 60
    assert result.training["pretrain_overlap"] is None


@pytest.mark.slow
def test_a_real_quick_pretrain_under_a_full_size_fine_tune_is_counted(demo_small, tmp_path):
    """The issue's case end to end: the pretrain records its quick-run sample, and the
    fine-tune (same seed and fraction, every image) counts the overlap."""
    from worker import jobs
    from worker.ml.reporting import Reporter

    tiny = demo_small.subset(n_train=80, n_test=20, seed=0)
    stage = {"epochs": 1, "batch_size": 10}
    params = {"ae01": stage, "ae02": stage, "ae03": stage, "probe_images": 2}
    params |= {"seed": 0, "validation_fraction": 0.25, "max_train_images": 40}
    status, _, _ = jobs.run(
        "pretrain",
        params,
        dataset=tiny,
        out_dir=tmp_path / "p",
        recorder=Reporter(),
        parent_dir=None,
        study_name=None,
        storage_url="sqlite://",
    )
    assert status == "succeeded"
    manifest = json.loads((tmp_path / "p" / "pretrain.json").read_text())
    assert manifest["image_sets"]["sets"]["train"]["count"] == 30  # 40 less 10 validation
    config = FinetuneConfig(encoder="single", epochs=1, batch_size=20, validation_fraction=0.25)
    result = finetune(tiny, config, out_dir=tmp_path / "f", pretrained_dir=tmp_path / "p")
    full = tiny.split_validation(fraction=0.25, seed=0)
    want = _by_hand(tiny, seed=0, fraction=0.25, max_images=40, study_val=full.val_indices)
    assert want > 0
    assert result.training["pretrain_overlap"]["validation"] == want
    assert f"{want} of this run's 20 validation images" in result.training["warnings"][0]
