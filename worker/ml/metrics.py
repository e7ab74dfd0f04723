"""Imbalance-aware classification metrics Keras can log every epoch.

Both accumulate a confusion matrix (rows: true class, columns: predicted) over the epoch,
so the score is that of the whole epoch's predictions, not a mean of per-batch scores.
Written with keras.ops only, so they run on any backend and inside a compiled step.
Labels are sparse integers; predictions are per-class scores (softmax), read by argmax.
"""

from __future__ import annotations

import keras
from keras import ops


class _ConfusionMetric(keras.metrics.Metric):
    """Base: an epoch's confusion matrix; subclasses turn it into one number."""

    def __init__(self, num_classes: int, name: str, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.num_classes = int(num_classes)
        self._direction = "up"  # read by Keras' callbacks in mode "auto": higher is better
        self.confusion = self.add_variable(
            shape=(self.num_classes, self.num_classes),
            initializer="zeros",
            dtype="float32",
            name="confusion",
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        # sample_weight is ignored on purpose: Keras hands class weights to the metrics as
        # sample weights, and these scores must stay unweighted, so runs with and without
        # class weights are judged on the same scale.
        del sample_weight
        n = self.num_classes
        true = ops.one_hot(ops.cast(ops.reshape(y_true, (-1,)), "int32"), n, dtype="float32")
        predicted = ops.argmax(ops.reshape(y_pred, (-1, n)), axis=-1)
        predicted = ops.one_hot(predicted, n, dtype="float32")
        self.confusion.assign_add(ops.matmul(ops.transpose(true), predicted))

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes), "float32"))

    def get_config(self):
        return {"num_classes": self.num_classes, "name": self.name, "dtype": self.dtype}

    def _counts(self):
        confusion = ops.convert_to_tensor(self.confusion)
        hits = ops.diagonal(confusion)
        return hits, ops.sum(confusion, axis=1), ops.sum(confusion, axis=0)


def _mean_over(values, mask):
    """Mean of values where mask is 1; 0 when the mask is empty (nothing seen yet)."""
    return ops.sum(values * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package="stacklab")
class BalancedAccuracy(_ConfusionMetric):
    """Mean recall over the classes present in y_true, as sklearn's balanced_accuracy_score.

    Chance level is 1/classes however imbalanced the data, so it stays comparable across
    imbalanced splits where plain accuracy rewards predicting the majority class.
    """

    def __init__(self, num_classes: int, name: str = "balanced_accuracy", dtype=None):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        hits, support, _ = self._counts()
        present = ops.cast(support > 0, "float32")
        return _mean_over(hits / ops.maximum(support, 1.0), present)


@keras.saving.register_keras_serializable(package="stacklab")
class MacroF1(_ConfusionMetric):
    """Mean F1 over the classes present in y_true or predicted.

    This is sklearn's `f1_score(y_true, y_pred, average="macro")` with its default labels
    (those seen in either). A class with images that is never predicted counts with F1 0; a
    class absent from y_true counts (with F1 0) only when it is predicted, since predicting
    it is then a mistake. Classes neither present nor predicted are left out rather than
    scored 0, so a validation split missing a rare class is not penalised for it.
    """

    def __init__(self, num_classes: int, name: str = "macro_f1", dtype=None):
        super().__init__(num_classes, name=name, dtype=dtype)

    def result(self):
        hits, support, predicted = self._counts()
        # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (support + predicted): defined for every
        # class seen in y_true or y_pred, with no 0/0.
        seen = support + predicted
        f1 = 2.0 * hits / ops.maximum(seen, 1.0)
        return _mean_over(f1, ops.cast(seen > 0, "float32"))


def classification_metrics(num_classes: int) -> list:
    """What a classifier logs every epoch: accuracy, balanced accuracy and macro-F1."""
    return ["accuracy", BalancedAccuracy(num_classes), MacroF1(num_classes)]
