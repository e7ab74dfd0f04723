"""A job leaves nothing of its traced graphs behind once release_memory ran (the pool child
would otherwise grow with every job: bench/worker_memory.py)."""

from __future__ import annotations

import gc

import keras
import pytest

from jobspec.params import FinetuneConfig
from worker.ml.datasets.demo import make_demo
from worker.ml.finetune import finetune
from worker.ml.training import release_memory

pytestmark = [
    pytest.mark.slow,  # trains a finetune
    pytest.mark.skipif(
        keras.backend.backend() != "tensorflow", reason="TensorFlow's gradient registry"
    ),
]


def _traced_graphs() -> int:
    from tensorflow.python.framework import func_graph

    return sum(isinstance(o, func_graph.FuncGraph) for o in gc.get_objects())


def test_no_traced_train_step_outlives_its_job(tmp_path):
    from tensorflow.python.framework import ops as tf_ops

    data = make_demo(seed=0, n_train=100, n_test=20)
    config = FinetuneConfig(encoder="scratch", architecture="single", epochs=1, batch_size=50)
    for job in range(2):
        finetune(data, config, out_dir=tmp_path / str(job))
        release_memory()
        gc.collect()
        assert _traced_graphs() == 0
        registry = tf_ops._gradient_registry._registry
        assert not [name for name in registry if name.startswith("CustomGradient-")]
