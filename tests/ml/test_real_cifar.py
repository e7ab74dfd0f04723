"""A short finetune on real CIFAR-10 pictures from ../shared/data (skips when absent)."""

from __future__ import annotations

import pytest

from jobspec.params import FinetuneConfig
from tests.stack import REPO_ROOT
from worker.ml.datasets.load import load_dataset
from worker.ml.finetune import finetune

SUBSET = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg-subset.zip"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SUBSET.exists(), reason=f"{SUBSET} is absent (real CIFAR-10 subset)"),
]


def test_short_finetune_runs_on_real_cifar10_pictures(tmp_path):
    data = load_dataset(str(SUBSET)).subset(n_train=300, n_test=100, seed=0)
    assert data.class_names[0] == "airplane" and data.num_classes == 10
    config = FinetuneConfig(
        encoder="scratch", architecture="single", epochs=1, batch_size=32, augment=True
    )
    result = finetune(data, config, out_dir=tmp_path)
    assert result.training["epochs_run"] == 1
    assert result.evaluation.confusion_matrix.sum() == 100
    assert (tmp_path / "classifier.keras").exists()
