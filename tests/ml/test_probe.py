"""What the autoencoders learned: the probe stage's features, scores, PCA and files, checked
against known answers and an independent scikit-learn computation on the same features."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no py.typed

from jobspec.learned import ENCODERS, LEARNED_FILE, LEARNED_FILTERS_FILE, PROBE_STAGE
from jobspec.metrics import METRICS
from jobspec.stages import STAGES
from worker.ml import probe
from worker.ml.models import build_autoencoder, encoder_of
from worker.ml.probe_scores import (
    BLAS_THREADS,
    KNN_K,
    PROBE_C,
    PROBE_MAX_ITER,
    TEST,
    TRAIN,
    VALIDATION,
    project,
    sample_indices,
    score,
)
from worker.ml.reporting import Reporter


def _by_hand(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Accuracy and balanced accuracy (mean recall over the true classes), in numpy."""
    recalls = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    return float(np.mean(truth == predicted)), float(np.mean(recalls))


def test_known_answer_on_one_dimensional_features():
    # Class 0 at 0..4, class 1 at 10..14; the test point at 5.5 is labelled 1 but lies on
    # class 0's side for both the linear probe (the boundary is the midpoint, 7, by symmetry)
    # and its 10 nearest neighbours (five of class 0 within 5.5, the nearest of class 1 at 4.5).
    train = np.array([[0.0], [1], [2], [3], [4], [10], [11], [12], [13], [14]])
    labels = {TRAIN: np.array([0] * 5 + [1] * 5), TEST: np.array([0, 1, 1])}
    features = {TRAIN: train, TEST: np.array([[1.0], [12], [5.5]])}
    found = score(features, labels, k=3)
    assert found["probe_accuracy"] == pytest.approx(2 / 3)
    assert found["probe_balanced_accuracy"] == pytest.approx(0.75)  # (1/1 + 1/2) / 2
    assert found["knn_accuracy"] == pytest.approx(2 / 3)
    assert found["knn_balanced_accuracy"] == pytest.approx(0.75)
    assert not any(name.startswith("val_") for name in found)  # no validation part given


def test_every_score_name_is_a_registered_metric():
    labels = {part: np.arange(20) % 2 for part in (TRAIN, VALIDATION, TEST)}
    features = {part: np.random.default_rng(1).normal(size=(20, 3)) for part in labels}
    names = set(score(features, labels))
    assert len(names) == 8
    for name in names:
        assert name.removeprefix("val_") in METRICS, name
    assert score(features, {**labels, TRAIN: np.zeros(20, int)}) == {}  # one class: no probe


@pytest.fixture(scope="module")
def encoders():
    keras.utils.set_random_seed(3)
    return {stage: build_autoencoder(stage, 3) for stage in STAGES}


def test_features_are_each_depths_output_mean_pooled_with_training_off(encoders, demo_small):
    x = demo_small.x_test[:20]
    chain = [encoder_of(encoders[s]) for s in STAGES]
    found = probe.extract(probe.feature_model(chain), x)
    images = x.astype("float32") / 255.0
    for depth, encoder in enumerate(chain):
        images = np.asarray(encoder(images, training=False))
        n, h, w, c = images.shape
        pooled = images.reshape(n, 2, h // 2, 2, w // 2, c).mean(axis=(2, 4)).reshape(n, -1)
        np.testing.assert_allclose(found[depth], pooled, rtol=1e-4, atol=1e-5)
    assert [f.shape[1] for f in found] == [256, 512, 1024]


def test_scores_equal_an_independent_scikit_learn_computation(encoders, demo_small):
    chain = [encoder_of(encoders[s]) for s in STAGES]
    model = probe.feature_model(chain)
    parts = {
        TRAIN: (demo_small.x_train[:300], demo_small.y_train[:300]),
        VALIDATION: (demo_small.x_train[300:], demo_small.y_train[300:]),
        TEST: (demo_small.x_test, demo_small.y_test),
    }
    features = {part: probe.extract(model, x)[1] for part, (x, _) in parts.items()}
    labels = {part: y for part, (_, y) in parts.items()}
    found = score(features, labels)

    linear = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=PROBE_MAX_ITER))
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=KNN_K))
    # One BLAS thread, as score() uses: with more, lbfgs took 8.5 s instead of 0.3 s here on a
    # loaded 2-core machine (the threads oversubscribe the cores).
    with threadpool_limits(limits=BLAS_THREADS):
        linear.fit(features[TRAIN], labels[TRAIN])
        knn.fit(features[TRAIN], labels[TRAIN])
        predicted = {
            (part, name): fitted.predict(features[part])
            for part in (VALIDATION, TEST)
            for name, fitted in (("probe", linear), ("knn", knn))
        }
    for part, prefix in ((VALIDATION, "val_"), (TEST, "")):
        for name in ("probe", "knn"):
            accuracy, balanced = _by_hand(labels[part], predicted[part, name])
            assert found[f"{prefix}{name}_accuracy"] == pytest.approx(accuracy, abs=1e-12)
            assert found[f"{prefix}{name}_balanced_accuracy"] == pytest.approx(balanced, abs=1e-12)


def test_pca_is_scikit_learns_on_the_standardized_test_sample():
    rng = np.random.default_rng(0)
    train, test = rng.normal(size=(50, 6)), rng.normal(size=(40, 6)) * [5, 1, 1, 1, 1, 0.1]
    labels = np.arange(40) % 4
    found = project(train, test, labels, cap=30, seed=2)
    keep = sample_indices(40, 30, 2)
    expected = PCA(2).fit_transform(StandardScaler().fit(train).transform(test[keep]))
    assert len(found["x"]) == 30 and found["label"] == [int(v) for v in labels[keep]]
    for axis, column in (("x", 0), ("y", 1)):  # a component's sign is arbitrary
        ours = np.array(found[axis])
        sign = np.sign(ours @ expected[:, column])
        np.testing.assert_allclose(ours, sign * expected[:, column], atol=1e-3)
    assert found["explained"][0] > found["explained"][1]


def test_sample_indices_cap_and_repeat():
    assert sample_indices(5, 10, 0).tolist() == [0, 1, 2, 3, 4]
    drawn = sample_indices(1000, 50, 7)
    assert len(drawn) == 50 and len(set(drawn)) == 50 and list(drawn) == sorted(drawn)
    assert sample_indices(1000, 50, 7).tolist() == drawn.tolist()


def test_filter_grid_tiles_every_filter(tmp_path):
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 64))
    path = probe.filter_grid(kernel, tmp_path / "f.png", columns=8, cell=24)
    width, height = Image.open(path).size
    assert (width, height) == (8 * 28 + 4, 8 * 28 + 4)  # 24-pixel tiles, 4-pixel gaps


class _Watch(Reporter):
    def __init__(self, stop_after: int | None = None):
        self.started: list[tuple[str, dict]] = []
        self.progress: list = []
        self.stop_after = stop_after

    def stage_started(self, stage, **sizes):
        self.started.append((stage, sizes))

    def batch_ended(self, progress):
        self.progress.append(progress)

    def should_stop(self):
        return self.stop_after is not None and len(self.progress) >= self.stop_after


def _stage(encoders, data, tmp_path, reporter, budget=None):
    parts = {
        TRAIN: (data.x_train[:60], data.y_train[:60]),
        VALIDATION: (data.x_train[60:80], data.y_train[60:80]),
        TEST: (data.x_test[:30], data.y_test[:30]),
    }
    return probe.learned_stage(
        encoders,
        parts,
        class_names=data.class_names,
        kernel_sizes=(3, 3, 3),
        seed=0,
        out_dir=tmp_path,
        budget=budget,
        reporter=reporter,
    )


def test_the_stage_reports_progress_and_writes_its_files(encoders, demo_small, tmp_path):
    watch = _Watch()
    learned = _stage(encoders, demo_small, tmp_path, watch, probe.ProbeBudget(40, 25))
    assert [s for s, _ in watch.started] == [PROBE_STAGE]
    assert {p.stage for p in watch.progress} == {PROBE_STAGE}
    assert watch.progress[-1].step == watch.progress[-1].steps == len(watch.progress)
    assert sorted(p.name for p in learned.files) == sorted([LEARNED_FILE, LEARNED_FILTERS_FILE])
    stored = json.loads((tmp_path / LEARNED_FILE).read_text())
    assert stored == json.loads(json.dumps(learned.summary))
    assert list(stored["encoders"]) == list(ENCODERS)
    assert stored["images"] == {TRAIN: 40, VALIDATION: 20, TEST: 30}  # capped at 40 a part
    assert stored["available"] == {TRAIN: 60, VALIDATION: 20, TEST: 30}
    assert all(len(e["pca"]["x"]) == 25 for e in stored["encoders"].values())
    assert stored["encoders"]["random"]["features"] == 1024


def test_a_stop_request_ends_the_stage_without_files(encoders, demo_small, tmp_path):
    learned = _stage(encoders, demo_small, tmp_path, _Watch(stop_after=2))
    assert learned.cancelled and learned.summary is None and not learned.files
    assert not (tmp_path / LEARNED_FILE).exists()


def test_a_pretrain_ends_with_the_probe_stage(pretrained_dir):
    stored = json.loads((pretrained_dir / LEARNED_FILE).read_text())
    assert list(stored["encoders"]) == list(ENCODERS)
    assert (pretrained_dir / LEARNED_FILTERS_FILE).exists()


def test_the_probe_runs_under_the_trainings_dtype_policy(monkeypatch, demo_small, tmp_path):
    # With mixed precision the random encoder is built as the trained ones were (float16
    # compute), and the pooled features stay float32.
    from jobspec.params import PretrainConfig, RuntimeOptions

    seen: dict = {}

    def fake_stage(models, parts, **settings):
        seen["policy"] = keras.mixed_precision.dtype_policy().name
        chain = [encoder_of(build_autoencoder(stage, 3)) for stage in STAGES]
        model = probe.feature_model(chain)
        seen["dtypes"] = [str(o.dtype) for o in model.outputs]  # the graph's, before extract
        probe.extract(model, parts[TEST][0])
        return probe.Learned(None)

    monkeypatch.setattr(probe, "learned_stage", fake_stage)
    config = PretrainConfig(runtime=RuntimeOptions(mixed_precision=True))
    split = demo_small.split_validation(fraction=0.1, seed=0)
    models = dict.fromkeys(STAGES)
    probe.after_pretrain(models, split, demo_small.subset(n_test=4), config, out_dir=tmp_path)
    assert seen["policy"] == "mixed_float16"
    assert seen["dtypes"] == ["float32"] * 3
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored after
