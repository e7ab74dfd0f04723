"""Per-epoch imbalance-aware metrics, and early stopping that watches them the right way."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from jobspec.params import EarlyStoppingConfig, FinetuneConfig
from worker.ml.finetune import _early_stopping
from worker.ml.metrics import BalancedAccuracy, MacroF1, classification_metrics

# The random cases predict class 4, which has no images: sklearn says so, and so do we.
pytestmark = pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")


def _random_case(seed: int, n: int = 300, classes: int = 6):
    """Skewed labels with class 4 never present, and scores where class 1 never wins."""
    rng = np.random.default_rng(seed)
    y = rng.choice([0, 1, 2, 3, 5], size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    scores = rng.random((n, classes)).astype("float32")
    scores[np.arange(n), y] += rng.random(n).astype("float32")  # better than chance
    scores[:, 1] = 0.0
    probabilities = scores / scores.sum(axis=1, keepdims=True)
    return y, probabilities


def _feed(metric, y, probabilities, batch=64, weights=None):
    for start in range(0, len(y), batch):
        sl = slice(start, start + batch)
        metric.update_state(y[sl], probabilities[sl], None if weights is None else weights[sl])
    return float(metric.result())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_balanced_accuracy_is_sklearns_over_a_whole_epoch_of_batches(seed):
    y, probabilities = _random_case(seed)
    want = balanced_accuracy_score(y, probabilities.argmax(axis=1))
    assert _feed(BalancedAccuracy(6), y, probabilities) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_is_sklearns_over_classes_present_or_predicted(seed):
    y, probabilities = _random_case(seed)
    predicted = probabilities.argmax(axis=1)
    assert 1 in y and 1 not in predicted  # a class never predicted counts, with F1 0
    assert 4 not in y and 4 in predicted  # a class with no images, predicted: F1 0 too
    want = f1_score(y, predicted, average="macro")  # sklearn's labels: seen in either
    assert _feed(MacroF1(6), y, probabilities) == pytest.approx(want, abs=1e-6)


def test_macro_f1_counts_a_predicted_class_that_has_no_images():
    y = np.array([0, 0, 1, 1])
    probabilities = np.eye(3, dtype="float32")[[0, 2, 1, 1]]  # one image called class 2
    got = _feed(MacroF1(3), y, probabilities)
    assert got == pytest.approx(f1_score(y, probabilities.argmax(1), average="macro"))
    # Restricted to the classes in y_true, sklearn would say more (class 2's F1 0 left out).
    assert got < f1_score(y, probabilities.argmax(1), average="macro", labels=[0, 1])


def test_class_weights_given_as_sample_weights_change_nothing():
    y, probabilities = _random_case(3)
    weights = np.where(y == 0, 0.2, 5.0).astype("float32")
    for metric in (BalancedAccuracy, MacroF1):
        plain = _feed(metric(6), y, probabilities)
        assert _feed(metric(6), y, probabilities, weights=weights) == pytest.approx(plain)


def test_reset_starts_a_new_epoch_and_an_empty_epoch_scores_zero():
    y, probabilities = _random_case(4)
    metric = BalancedAccuracy(6)
    assert float(metric.result()) == 0.0
    _feed(metric, y, probabilities)
    metric.reset_state()
    assert _feed(metric, y[:50], probabilities[:50]) == pytest.approx(
        balanced_accuracy_score(y[:50], probabilities[:50].argmax(axis=1)), abs=1e-6
    )


def test_a_compiled_model_logs_them_for_train_and_validation():
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4)).astype("float32"), rng.integers(0, 3, 40)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=classification_metrics(3))
    history = model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0).history
    assert {"balanced_accuracy", "macro_f1", "val_balanced_accuracy", "val_macro_f1"} <= set(
        history
    )
    predicted = np.asarray(model.predict_on_batch(x)).argmax(axis=1)
    assert history["val_balanced_accuracy"][0] == pytest.approx(
        balanced_accuracy_score(y, predicted), abs=1e-6
    )
    assert history["val_macro_f1"][0] == pytest.approx(
        f1_score(y, predicted, average="macro"), abs=1e-6
    )


class _Model:
    stop_training = False

    def get_weights(self):
        return []

    def set_weights(self, weights):
        pass


def _watch(stopper, values):
    stopper.set_model(_Model())
    stopper.on_train_begin()
    for epoch, value in enumerate(values):
        stopper.on_epoch_end(epoch, {stopper.monitor: value})
        if stopper.model.stop_training:
            return epoch + 1
    return len(values)


@pytest.mark.parametrize("monitor", ["val_balanced_accuracy", "val_macro_f1", "val_accuracy"])
def test_early_stopping_waits_while_a_score_rises(monitor):
    config = FinetuneConfig(early_stopping=EarlyStoppingConfig(monitor=monitor, patience=1))
    rising = [0.2, 0.3, 0.4, 0.5, 0.6]
    stopper = _early_stopping(config)
    assert stopper.mode == "max"
    assert _watch(stopper, rising) == 5 and stopper.best_epoch == 4
    # Read the wrong way (as a loss), the same curve stops at once on the first "worse" epoch.
    wrong = keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=1)
    assert _watch(wrong, rising) == 2
    assert _watch(_early_stopping(config), [0.5, 0.4, 0.3]) == 2


def test_early_stopping_on_val_loss_still_minimises():
    stopper = _early_stopping(FinetuneConfig(early_stopping=EarlyStoppingConfig(patience=1)))
    assert stopper.mode == "min"
    assert _watch(stopper, [1.0, 0.8, 0.6, 0.4]) == 4
