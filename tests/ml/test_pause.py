"""A job asked to pause (its run set aside for one of higher priority) stops right after a
checkpoint, and resuming from it gives what the uninterrupted job gives, bit for bit."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from jobspec.params import (
    EarlyStoppingConfig,
    FinetuneConfig,
    PretrainConfig,
    StageConfig,
    TuneConfig,
)
from worker.ml.callbacks import FitState
from worker.ml.checkpoint import Checkpoint
from worker.ml.finetune import finetune
from worker.ml.pretrain import pretrain
from worker.ml.reporting import Reporter
from worker.ml.tune import tune

pytestmark = pytest.mark.slow


class Pausing(Reporter):
    """Keeps epochs, trials and checkpoints; asks to pause after the checkpoint of
    `pause_at` (stage, epoch), the way the worker's recorder does once its run is set aside."""

    def __init__(self, pause_at: tuple[str, int] | None = None):
        self.pause_at = pause_at
        self.epochs: list[tuple[str, int, dict]] = []
        self.trials: list = []
        self.checkpoints: list[bytes] = []
        self.asked: list[tuple[str, int]] = []  # where should_pause was asked
        self.stops_asked = 0
        self._last: tuple[str, int] | None = None

    def epoch_ended(self, stage, epoch, metrics):
        self.epochs.append((stage, epoch, metrics))

    def trial_ended(self, trial):
        self.trials.append(trial)

    def wants_checkpoints(self):
        return True

    def checkpoint(self, checkpoint):
        self.checkpoints.append(checkpoint.to_bytes())
        self._last = (checkpoint.stage, checkpoint.epoch)

    def should_stop(self):
        self.stops_asked += 1
        return False

    def should_pause(self):
        assert self._last is not None, "asked before any checkpoint"
        self.asked.append(self._last)
        return self.pause_at is not None and self.pause_at in self.asked

    def last(self) -> Checkpoint:
        return Checkpoint.from_bytes(self.checkpoints[-1])

    def history(self, key: str) -> list[float]:
        return [metrics[key] for _, _, metrics in self.epochs if key in metrics]


def _same_checkpoint_arrays(a: Checkpoint, b: Checkpoint) -> None:
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)


@pytest.fixture(scope="module")
def tiny(demo_small):
    """30 train / 10 validation images: three batches of ten per epoch."""
    return demo_small.subset(n_train=40, n_test=10, seed=0)


def test_a_paused_finetune_resumes_bit_for_bit(tiny, tmp_path):
    config = FinetuneConfig(
        encoder="scratch",
        architecture="single",
        epochs=4,
        batch_size=10,
        validation_fraction=0.25,
        augment=True,
        early_stopping=EarlyStoppingConfig(patience=10),
    )
    whole = Pausing()
    want = finetune(tiny, config, out_dir=tmp_path / "whole", reporter=whole)

    paused = Pausing(pause_at=("finetune", 2))
    first = finetune(tiny, config, out_dir=tmp_path / "paused", reporter=paused)
    assert first.cancelled
    assert [e for _, e, _ in paused.epochs] == [1, 2]  # stopped at the boundary, not inside
    point = paused.last()
    assert (point.stage, point.epoch) == ("finetune", 2)
    # The stop came after the checkpoint: what it records is an ordinary epoch's end.
    state = FitState.from_json(point.state["fit"])
    assert (state.epoch, state.stopped) == (2, False)
    assert paused.stops_asked > 0 and whole.stops_asked > 0  # a pause is not a stop
    _same_checkpoint_arrays(point, Checkpoint.from_bytes(whole.checkpoints[1]))

    again = Pausing()
    got = finetune(tiny, config, out_dir=tmp_path / "again", reporter=again, resume=point)
    assert [e for _, e, _ in again.epochs] == [3, 4]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert paused.history(key) + again.history(key) == whole.history(key), key
    assert got.training["final"] == want.training["final"]
    assert got.evaluation.accuracy == want.evaluation.accuracy
    x = tiny.x_test.astype("float32") / 255
    np.testing.assert_array_equal(
        np.asarray(got.model.predict_on_batch(x)), np.asarray(want.model.predict_on_batch(x))
    )


@pytest.mark.parametrize("pause_at", [("ae01", 2), ("ae02", 1)])
def test_a_paused_pretrain_resumes_bit_for_bit(tiny, tmp_path, pause_at):
    config = PretrainConfig(
        ae01=StageConfig(epochs=2, batch_size=10),
        ae02=StageConfig(epochs=2, batch_size=10),
        ae03=StageConfig(epochs=1, batch_size=10),
        validation_fraction=0.25,
    )
    whole = Pausing()
    want = pretrain(tiny, config, out_dir=tmp_path / "whole", reporter=whole)

    paused = Pausing(pause_at=pause_at)
    first = pretrain(tiny, config, out_dir=tmp_path / "paused", reporter=paused)
    assert first.cancelled
    assert (paused.epochs[-1][0], paused.epochs[-1][1]) == pause_at
    point = paused.last()
    assert (point.stage, point.epoch) == pause_at
    assert FitState.from_json(point.state["fit"]).stopped is False

    again = Pausing()
    got = pretrain(tiny, config, out_dir=tmp_path / "again", reporter=again, resume=point)
    assert not got.cancelled
    done = [(s, e) for s, e, _ in paused.epochs] + [(s, e) for s, e, _ in again.epochs]
    assert done == [(s, e) for s, e, _ in whole.epochs]  # every epoch once
    for key in ("loss", "val_loss"):
        assert paused.history(key) + again.history(key) == whole.history(key), key
    for stage in ("ae01", "ae02", "ae03", "stacked_ae"):
        for mine, theirs in zip(
            got.models[stage].variables, want.models[stage].variables, strict=True
        ):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=stage)
    assert got.test_reconstruction_loss == want.test_reconstruction_loss


@pytest.mark.parametrize("search", ["grid", "tpe"])
def test_a_tune_pauses_between_trials_and_resumes_bit_for_bit(tiny, tmp_path, search):
    config = TuneConfig(
        n_trials=3,
        epochs=2,
        batch_size=15,
        kernel_sizes=[3, 5],
        optimizers=["adam", "sgd", "rmsprop"],
        tune_learning_rate=search == "tpe",
        validation_fraction=0.25,
        pruning=False,
    )

    def trials(storage: str) -> list[tuple[int, dict, float | None]]:
        study = optuna.load_study(study_name=config.study_name, storage=storage)
        return [(t.number, t.params, t.value) for t in study.trials]

    whole_db = f"sqlite:///{tmp_path / 'whole.db'}"
    whole = Pausing()
    want = tune(tiny, config, out_dir=tmp_path / "whole", storage=whole_db, reporter=whole)

    paused_db = f"sqlite:///{tmp_path / 'paused.db'}"
    paused = Pausing(pause_at=("tune", 1))
    first = tune(tiny, config, out_dir=tmp_path / "paused", storage=paused_db, reporter=paused)
    assert first.cancelled
    assert len(trials(paused_db)) == 1  # the pause came after trial 0, before trial 1
    assert {e for _, e, _ in paused.epochs} == {1, 2}  # the trial ran all its epochs
    point = paused.last()
    assert (point.stage, point.epoch, point.state["trials"]) == ("tune", 1, [0])

    again = Pausing()
    got = tune(
        tiny,
        config,
        out_dir=tmp_path / "paused",
        storage=paused_db,
        reporter=again,
        resume=point,
    )
    assert not got.cancelled
    assert trials(paused_db) == trials(whole_db)  # same points, same scores, same numbers
    assert (got.best_params, got.best_value) == (want.best_params, want.best_value)
    # Asked only between trials, and not after the last (nothing is left to set aside).
    assert again.asked == [("tune", 2)]
