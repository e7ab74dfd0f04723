"""Tests for the Dataset type, the demo dataset and load_dataset's dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from worker.ml.datasets.dataset import DataError, Dataset, Split
from worker.ml.datasets.demo import CLASS_NAMES, make_demo
from worker.ml.datasets.load import load_dataset
from worker.ml.datasets.npz import load_saved

REPO_ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def small() -> Dataset:
    """A small balanced demo dataset."""
    return make_demo(seed=0, n_train=300, n_test=100)


@pytest.fixture(scope="module")
def skewed() -> Dataset:
    """A small imbalanced demo dataset (rarest class has ~10% of the largest)."""
    return make_demo(seed=1, n_train=1000, n_test=100, imbalance=0.1)


def tiny(**changes) -> Dataset:
    """A hand-made 3-class dataset; keyword arguments override fields."""
    rng = np.random.default_rng(0)
    fields = dict(
        name="tiny",
        x_train=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        y_train=np.array([0, 0, 1, 1, 2, 2]),
        x_test=rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8),
        y_test=np.array([0, 1, 2]),
        class_names=("a", "b", "c"),
        source="npz",
    )
    return Dataset(**(fields | changes))


def fft_features(x: np.ndarray) -> np.ndarray:
    """Translation-invariant features: log FFT magnitudes of standardised grey images."""
    grey = x.astype(np.float32).mean(-1)
    grey = (grey - grey.mean((1, 2), keepdims=True)) / (grey.std((1, 2), keepdims=True) + 1e-6)
    return np.log1p(np.abs(np.fft.rfft2(grey)).reshape(len(x), -1))


# --- demo ---------------------------------------------------------------------------------


def test_demo_is_identical_for_a_seed_and_differs_across_seeds():
    a, b = make_demo(seed=7, n_train=100, n_test=20), make_demo(seed=7, n_train=100, n_test=20)
    c = make_demo(seed=8, n_train=100, n_test=20)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_demo_has_ten_named_balanced_classes_of_uint8_images(small):
    assert small.class_names == CLASS_NAMES and small.num_classes == 10
    assert small.x_train.shape == (300, 32, 32, 3) and small.x_train.dtype == np.uint8
    assert small.y_train.dtype == np.int64 and small.source == "demo"
    assert set(small.class_counts("train").values()) == {30}
    assert set(small.class_counts("test").values()) == {10}


def test_demo_generates_six_thousand_images_fast():
    start = time.process_time()  # CPU time: steady when other jobs load the machine
    make_demo(seed=0)
    assert time.process_time() - start < 1.5


def test_demo_is_learnable_by_a_shallow_classifier():
    from sklearn.neighbors import NearestCentroid
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = make_demo(seed=2, n_train=2000, n_test=500)
    model = make_pipeline(StandardScaler(), NearestCentroid())
    model.fit(fft_features(ds.x_train), ds.y_train)
    assert model.score(fft_features(ds.x_test), ds.y_test) > 0.30


def test_demo_imbalance_decays_geometrically_in_train_only(skewed):
    counts = np.array(list(skewed.class_counts("train").values()))
    assert counts.sum() == 1000 and np.all(np.diff(counts) < 0)
    assert counts[-1] / counts[0] == pytest.approx(0.1, abs=0.01)
    assert set(skewed.class_counts("test").values()) == {10}
    balanced = make_demo(seed=1, n_train=50, n_test=100)
    assert np.array_equal(balanced.x_test, skewed.x_test)  # one test set for both


def test_demo_refuses_bad_arguments():
    with pytest.raises(DataError, match="imbalance"):
        make_demo(imbalance=0.0)
    with pytest.raises(DataError, match="n_train"):
        make_demo(n_train=0)


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x_train": np.zeros((6, 32, 32, 3), np.float32)}, "dtype float32"),
        ({"x_train": np.zeros((6, 28, 28, 3), np.uint8)}, r"shape \(6, 28, 28, 3\)"),
        ({"x_train": np.zeros((6, 3, 32, 32), np.uint8)}, "channels-first"),
        ({"x_test": np.zeros((0, 32, 32, 3), np.uint8), "y_test": np.array([], int)}, "empty"),
        ({"y_train": np.array([0, 1, 2])}, "one label per image"),
        ({"y_train": np.array([0, 0, 1, 1, 2, 3])}, r"outside \[0, 3\): 3"),
        ({"y_test": np.array([0, -1, 2])}, "outside"),
        ({"y_train": np.zeros(6)}, "dtype float64"),
        ({"class_names": ("a", "a", "c")}, "duplicates"),
        ({"class_names": ("a", "", "c")}, "non-empty strings"),
        ({"class_names": ()}, "class_names is empty"),
        ({"class_names": "abc"}, "tuple or list"),
        ({"name": ""}, "name"),
    ],
)
def test_dataset_refuses_invalid_fields(changes, message):
    with pytest.raises(DataError, match=message):
        tiny(**changes)


def test_dataset_arrays_are_read_only_views_with_int64_labels():
    x = np.zeros((6, 32, 32, 3), np.uint8)
    ds = tiny(x_train=x, y_train=np.array([0, 0, 1, 1, 2, 2], np.uint8))
    assert ds.y_train.dtype == np.int64
    with pytest.raises(ValueError):
        ds.x_train[0, 0, 0, 0] = 1
    assert x.flags.writeable  # the caller's own array is left alone


def test_class_counts_lists_every_class_including_empty_ones():
    ds = tiny(class_names=("a", "b", "c", "d"))
    assert ds.class_counts() == {"a": 2, "b": 2, "c": 2, "d": 0}
    assert ds.class_counts("test") == {"a": 1, "b": 1, "c": 1, "d": 0}
    with pytest.raises(ValueError, match="split"):
        ds.class_counts("val")


# --- fingerprint --------------------------------------------------------------------------


def test_fingerprint_is_stable_and_ignores_name_and_source():
    a, b = tiny(), tiny(name="other", source="demo")
    assert a.fingerprint() == b.fingerprint() == a.fingerprint()
    assert len(a.fingerprint()) == 64


@pytest.mark.parametrize("what", ["pixel", "label", "class name"])
def test_fingerprint_changes_with_content(what):
    base = tiny()
    x = base.x_train.copy()
    x[0, 0, 0, 0] ^= 1
    changes = {
        "pixel": {"x_train": x},
        "label": {"y_test": np.array([0, 2, 1])},
        "class name": {"class_names": ("a", "b", "z")},
    }[what]
    assert tiny(**changes).fingerprint() != base.fingerprint()


# --- split, weights, subset, summary -------------------------------------------------------


def test_split_validation_keeps_class_proportions(skewed):
    split = skewed.split_validation(fraction=0.2, seed=3)
    assert isinstance(split, Split)
    assert len(split.y_train) + len(split.y_val) == len(skewed.y_train)
    val_counts = np.bincount(split.y_val, minlength=10)
    expected = np.bincount(skewed.y_train, minlength=10) * 0.2
    assert np.all(np.abs(val_counts - expected) <= 1)
    assert split.x_val.shape[1:] == (32, 32, 3)


def test_split_validation_is_deterministic_for_a_seed(small):
    a, b = small.split_validation(seed=5), small.split_validation(seed=5)
    c = small.split_validation(seed=6)
    assert np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_val, c.x_val)


def test_split_validation_refuses_a_class_with_one_image():
    ds = tiny(y_train=np.array([0, 0, 1, 1, 1, 2]))
    with pytest.raises(DataError, match="class 'c' has only 1 training image"):
        ds.split_validation(fraction=0.5)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_validation_refuses_fraction_outside_zero_one(small, fraction):
    with pytest.raises(DataError, match="fraction"):
        small.split_validation(fraction=fraction)


def test_class_weights_balance_the_training_labels(skewed):
    weights = skewed.class_weights()
    counts = np.bincount(skewed.y_train, minlength=10)
    totals = [weights[c] * counts[c] for c in range(10)]
    assert totals == pytest.approx([len(skewed.y_train) / 10] * 10)
    assert weights[9] > weights[0]


def test_class_weights_give_absent_classes_one():
    weights = tiny(class_names=("a", "b", "c", "d")).class_weights()
    assert weights == pytest.approx({0: 1.0, 1: 1.0, 2: 1.0, 3: 1.0})


def test_subset_keeps_class_proportions(skewed):
    sub = skewed.subset(n_train=200, n_test=30, seed=1)
    assert len(sub.y_train) == 200 and len(sub.y_test) == 30
    expected = np.bincount(skewed.y_train, minlength=10) * 200 / len(skewed.y_train)
    assert np.all(np.abs(np.bincount(sub.y_train, minlength=10) - expected) <= 1)
    assert sub.class_names == skewed.class_names
    assert np.shares_memory(skewed.subset(n_test=10).x_train, skewed.x_train)  # no copy
    with pytest.raises(DataError, match="n_train"):
        skewed.subset(n_train=5000)


def test_summary_is_json_serialisable(small):
    summary = json.loads(json.dumps(small.summary()))
    assert summary["n_train"] == 300 and summary["image_shape"] == [32, 32, 3]
    assert summary["fingerprint"] == small.fingerprint()
    assert summary["train_counts"]["circle"] == 30


# --- save / load --------------------------------------------------------------------------


def test_save_and_load_round_trip_without_leftover_files(tmp_path, small):
    target = small.save(tmp_path / "sets" / "demo.npz")
    loaded = load_saved(target)
    assert [p.name for p in target.parent.iterdir()] == ["demo.npz"]
    assert loaded.fingerprint() == small.fingerprint()
    assert (loaded.name, loaded.source, loaded.class_names) == ("demo", "demo", CLASS_NAMES)
    assert load_dataset(str(target)).fingerprint() == small.fingerprint()


def test_failed_save_leaves_no_file(tmp_path, small, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        small.save(tmp_path / "demo.npz")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_file(tmp_path, small, monkeypatch):
    target = tiny().save(tmp_path / "d.npz")
    monkeypatch.setattr(np, "savez", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        small.save(target)
    assert load_saved(target).fingerprint() == tiny().fingerprint()
    assert [p.name for p in tmp_path.iterdir()] == ["d.npz"]


def test_load_refuses_a_plain_npz(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, x_train=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="plain.npz: not a stacklab dataset file"):
        load_saved(path)


# --- load_dataset -------------------------------------------------------------------------


def test_load_dataset_makes_demo_sets():
    assert load_dataset("demo").name == "demo"
    skewed = load_dataset("demo-imbalanced", seed=1)
    assert skewed.name == "demo-imbalanced"
    counts = skewed.class_counts()
    assert counts["dots"] / counts["circle"] == pytest.approx(0.1, abs=0.01)


@pytest.mark.parametrize("spec", ["mnist", "no/such/file.npz"])
def test_load_dataset_refuses_unknown_specs_listing_what_is_accepted(spec):
    with pytest.raises(DataError, match="accepted: 'demo', 'demo-imbalanced', 'cifar10'"):
        load_dataset(spec)


def test_load_dataset_refuses_unknown_file_types(tmp_path):
    (tmp_path / "data.csv").write_text("x,y\n")
    with pytest.raises(DataError, match="unrecognised file type"):
        load_dataset(str(tmp_path / "data.csv"))


def test_data_modules_import_no_web_db_or_keras_frameworks():
    code = (
        "import sys, worker.ml.datasets.load\n"
        "banned = ('fastapi', 'celery', 'sqlalchemy', 'backend', 'keras', 'tensorflow')\n"
        "print([m for m in banned if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
