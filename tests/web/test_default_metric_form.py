"""The new-run form's "auto" study metric is the launcher's: decided by the test set's
classes (where a study scores), never the training set's (issue 23, point 9)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backend.datasets.schemas import DatasetRead
from backend.runs.form import study_controls
from jobspec import ablations


def _dataset(train: dict[str, int], test: dict[str, int]) -> DatasetRead:
    return DatasetRead(
        id=1, name="d", source="s", fingerprint="f", n_train=sum(train.values()),
        n_test=sum(test.values()), image_shape=[32, 32, 3], class_names=list(train),
        train_counts=train, test_counts=test, created_at=datetime.now(UTC),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("train", "test", "expected"),
    [
        ({"a": 500, "b": 50}, {"a": 100, "b": 100}, "accuracy"),  # the seed's CIFAR-10 case
        ({"a": 100, "b": 100}, {"a": 100, "b": 10}, "balanced_accuracy"),
        ({"a": 100, "b": 100}, {"a": 100, "b": 100}, "accuracy"),
        ({"a": 500, "b": 50}, {"a": 300, "b": 30}, "balanced_accuracy"),
    ],
)
def test_auto_picks_by_the_test_classes_in_the_form_and_the_launcher(train, test, expected):
    dataset = _dataset(train, test)
    assert study_controls()["default_metric_of"](dataset) == expected
    assert ablations.default_metric(train, test) == expected
