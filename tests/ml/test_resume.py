"""Per-epoch checkpoints and resuming a job where a dead worker left it."""

from __future__ import annotations

import io
import zipfile

import keras
import numpy as np
import optuna
import pytest

from jobspec.learned import PROBE_STAGE
from jobspec.params import (
    EarlyStoppingConfig,
    FinetuneConfig,
    PretrainConfig,
    StageConfig,
    TuneConfig,
)
from worker.ml import artifacts
from worker.ml.checkpoint import Checkpoint, CheckpointError, capture, restore
from worker.ml.finetune import finetune
from worker.ml.pipeline import _numpy_batches, make_input
from worker.ml.pretrain import pretrain
from worker.ml.reporting import Reporter
from worker.ml.tune import tune


class _WorkerDied(BaseException):
    """What a killed worker looks like from inside: nothing after it runs."""


class Recorder(Reporter):
    """Keeps epochs, stages, trials and checkpoint bytes; can stop or die at a given point."""

    def __init__(self, *, stop_at=None, die_at=None):
        self.epochs, self.started, self.trials, self.checkpoints, self.held = [], [], [], [], []
        self.order: list[tuple[str, int]] = []
        self.stop_at, self.die_at = stop_at, die_at  # (stage, 1-based epoch) of a batch
        self._at = None

    def stage_started(self, stage, *, epochs, steps, images):
        self.started.append(stage)

    def batch_ended(self, progress):
        self._at = (progress.stage, progress.epoch)
        if self._at == self.die_at:
            raise _WorkerDied

    def epoch_ended(self, stage, epoch, metrics):
        self.epochs.append((stage, epoch, metrics))
        self.order.append(("epoch", epoch))

    def trial_ended(self, trial):
        self.trials.append(trial)

    def should_stop(self):
        return self._at is not None and self._at == self.stop_at

    def wants_checkpoints(self):
        return True

    def checkpoint(self, checkpoint):
        self.held.append(checkpoint)  # serialized again later, as a link thread would
        self.checkpoints.append(checkpoint.to_bytes())
        self.order.append(("checkpoint", checkpoint.epoch))

    def checkpoint_at(self, epoch: int, stage: str | None = None) -> Checkpoint:
        found = [Checkpoint.from_bytes(b) for b in self.checkpoints]
        return next(c for c in found if c.epoch == epoch and stage in (None, c.stage))

    def history(self, key: str) -> list[float]:
        return [metrics[key] for _, _, metrics in self.epochs]


@pytest.fixture(scope="module")
def tiny(demo_small):
    """30 train / 10 validation images: three batches of ten per epoch."""
    return demo_small.subset(n_train=40, n_test=10, seed=0)


def _finetune_config(**changes) -> FinetuneConfig:
    base = {
        "encoder": "scratch",
        "architecture": "single",
        "epochs": 4,
        "batch_size": 10,
        "validation_fraction": 0.25,
        "early_stopping": EarlyStoppingConfig(patience=10),
    }
    return FinetuneConfig(**(base | changes))


@pytest.mark.parametrize("shuffle", [True, False])
def test_a_pipeline_started_at_epoch_k_yields_the_batches_after_k_epochs(shuffle):
    x = np.arange(23 * 2 * 2 * 1, dtype=np.uint8).reshape(23, 2, 2, 1)
    y = np.arange(23) % 3
    full = make_input(x, y, batch_size=5, shuffle=shuffle, seed=7)
    later = make_input(x, y, batch_size=5, shuffle=shuffle, seed=7, start_epoch=2)
    assert full.steps == 5
    batches = [b for _, b in zip(range(4 * full.steps), iter(full.data), strict=False)]
    resumed = [b for _, b in zip(range(2 * full.steps), iter(later.data), strict=False)]
    for want, got in zip(batches[2 * full.steps :], resumed, strict=True):
        np.testing.assert_array_equal(np.asarray(want[0]), np.asarray(got[0]))
        np.testing.assert_array_equal(np.asarray(want[1]), np.asarray(got[1]))
    # Each epoch is one pass over every image, ending with its own partial batch.
    epoch = [np.asarray(b[1]) for b in batches[: full.steps]]
    assert [len(b) for b in epoch] == [5, 5, 5, 5, 3]
    seen = np.concatenate([np.asarray(b[0])[:, 0, 0, 0] for b in batches[: full.steps]])
    assert sorted(np.rint(seen * 255).astype(int)) == sorted(x[:, 0, 0, 0])
    orders = [np.asarray(batches[e * 5][1]) for e in range(4)]
    assert shuffle == any((orders[0] != o).any() for o in orders[1:])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.data pipeline only")
def test_the_pipeline_runs_without_tf_data_autotuning():
    """Autotuning's model thread made each iterator's destructor wait out its sleep (seconds
    at every validation, bench/train_overhead.py); the pipeline uses fixed settings."""
    from worker.ml.pipeline import PREFETCH_BATCHES

    x = np.zeros((10, 2, 2, 1), dtype=np.uint8)
    data = make_input(x, np.zeros(10), batch_size=4, shuffle=True, seed=0).data
    assert data.options().autotune.enabled is False
    assert PREFETCH_BATCHES >= 2
    batches = [np.asarray(b[0]) for _, b in zip(range(3), iter(data), strict=False)]
    assert [len(b) for b in batches] == [4, 4, 2]


def test_the_numpy_stream_also_depends_only_on_seed_and_epoch():
    x = np.arange(7 * 4, dtype=np.uint8).reshape(7, 2, 2, 1)
    stream = _numpy_batches(x, None, batch_size=3, shuffle=True, seed=1, start_epoch=0)
    later = _numpy_batches(x, None, batch_size=3, shuffle=True, seed=1, start_epoch=1)
    skipped = [next(stream) for _ in range(6)][3:]
    for want, got in zip(skipped, [next(later) for _ in range(3)], strict=True):
        np.testing.assert_array_equal(want, got)


def test_checkpoint_bytes_round_trip():
    arrays = {
        "model/0000": np.arange(6, dtype=np.float32).reshape(2, 3),
        "model/0001": np.asfortranarray(np.ones((3, 2), np.float64)),
        "optimizer/0000": np.array(12, np.int64),
        "empty": np.zeros((0, 4), np.uint8),
    }
    state = {"fit": {"history": {"loss": [0.5, float("nan")]}}, "best": None}
    back = Checkpoint.from_bytes(Checkpoint("ae02", 3, state, arrays).to_bytes())
    assert (back.stage, back.epoch) == ("ae02", 3)
    assert back.state["best"] is None and np.isnan(back.state["fit"]["history"]["loss"][1])
    assert set(back.arrays) == set(arrays)
    for name, array in arrays.items():
        assert back.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(back.arrays[name], array)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    header = b'{"format":1,"stage":"s","epoch":1,"state":{}}'
    np.savez(buffer, __state__=np.frombuffer(header, np.uint8), **arrays)
    return buffer.getvalue()


def test_from_bytes_never_unpickles_and_checks_sizes():
    assert Checkpoint.from_bytes(_npz(ok=np.ones(2))).arrays["ok"].tolist() == [1.0, 1.0]
    with pytest.raises(CheckpointError, match="object arrays"):
        Checkpoint.from_bytes(_npz(bad=np.array([{"x": 1}], dtype=object)))
    with pytest.raises(CheckpointError):
        Checkpoint.from_bytes(b"not an npz at all")
    compressed = io.BytesIO()
    np.savez_compressed(compressed, a=np.ones(3))
    with pytest.raises(CheckpointError, match="compressed"):
        Checkpoint.from_bytes(compressed.getvalue())
    # A header that claims a huge array in a small entry is refused before allocating.
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)}
    )
    member.write(b"\0" * 16)
    forged = io.BytesIO(_npz())
    with zipfile.ZipFile(forged, "a") as archive:
        archive.writestr("huge.npy", member.getvalue())
    with pytest.raises(CheckpointError, match="does not match"):
        Checkpoint.from_bytes(forged.getvalue())


def test_restore_refuses_a_checkpoint_of_another_model():
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    arrays = capture(small.variables, "model")
    with pytest.raises(CheckpointError, match="checkpoint has"):
        restore(other.variables, arrays, "model")
    with pytest.raises(CheckpointError, match="number of variables"):
        restore(small.variables[:1], arrays, "model")


def test_the_cli_reporter_pays_nothing_for_checkpoints():
    from cli.progress import TqdmReporter

    assert not Reporter().wants_checkpoints()
    assert not TqdmReporter(disable=True).wants_checkpoints()


@pytest.mark.slow
def test_finetune_cut_after_epoch_two_resumes_exactly_where_it_stopped(tiny, tmp_path):
    config = _finetune_config(augment=True)
    whole = Recorder()
    want = finetune(tiny, config, out_dir=tmp_path / "whole", reporter=whole)
    cut = Recorder(stop_at=("finetune", 3))  # cancelled at the first batch of epoch 3
    finetune(tiny, config, out_dir=tmp_path / "cut", reporter=cut)
    assert [e for _, e, _ in cut.epochs] == [1, 2, 3]
    assert [Checkpoint.from_bytes(b).epoch for b in cut.checkpoints] == [1, 2]  # not the cut one
    assert cut.order[:4] == [("epoch", 1), ("checkpoint", 1), ("epoch", 2), ("checkpoint", 2)]
    # A checkpoint holds copies: training on does not change what it serializes to.
    assert [c.to_bytes() for c in cut.held] == cut.checkpoints

    again = Recorder()
    checkpoint = Checkpoint.from_bytes(cut.checkpoint_at(2).to_bytes())
    got = finetune(tiny, config, out_dir=tmp_path / "again", reporter=again, resume=checkpoint)
    assert [e for _, e, _ in again.epochs] == [3, 4]
    assert got.training["epochs_run"] == 4
    steps = 3
    assert int(checkpoint.arrays["optimizer/0000"]) == 2 * steps  # Adam's iterations
    assert int(again.checkpoint_at(4).arrays["optimizer/0000"]) == 4 * steps
    manifest = artifacts.read_json(tmp_path / "again" / "finetune.json")
    assert manifest["training"]["epochs_run"] == 4
    # Same batches, restored weights, optimizer slots and augmentation RNG: the resumed
    # run is bit-identical to the uninterrupted one on this machine.
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1"):
        assert cut.history(key)[:2] + again.history(key) == whole.history(key), key
    assert got.training["final"] == want.training["final"]
    assert got.evaluation.accuracy == want.evaluation.accuracy
    x = tiny.x_test.astype("float32") / 255
    np.testing.assert_array_equal(
        np.asarray(got.model.predict_on_batch(x)), np.asarray(want.model.predict_on_batch(x))
    )


@pytest.mark.slow
def test_early_stopping_patience_runs_out_across_the_interruption(tiny, tmp_path):
    # min_delta 10: no epoch after the first improves, so patience 2 stops after epoch 3.
    stopping = EarlyStoppingConfig(patience=2, min_delta=10.0)
    config = _finetune_config(epochs=6, early_stopping=stopping)
    whole = Recorder()
    want = finetune(tiny, config, out_dir=tmp_path / "whole", reporter=whole)
    assert want.training["stopped_early"] and want.training["epochs_run"] == 3

    again = Recorder()
    got = finetune(
        tiny, config, out_dir=tmp_path / "again", reporter=again, resume=whole.checkpoint_at(2)
    )
    assert [e for _, e, _ in again.epochs] == [3]  # the restored wait ran out at once
    for key in ("epochs_run", "stopped_early", "best_epoch", "best_value", "final"):
        assert got.training[key] == want.training[key], key
    assert got.training["restored_best_weights"]

    # A checkpoint only resumes the run it was taken of.
    other = _finetune_config(epochs=6, early_stopping=stopping, learning_rate=0.01)
    with pytest.raises(CheckpointError, match="other parameters"):
        finetune(tiny, other, out_dir=tmp_path / "x", resume=whole.checkpoint_at(2))
    wrong_kind = Checkpoint("ae01", 1, whole.checkpoint_at(2).state)
    with pytest.raises(CheckpointError, match="'ae01'"):
        finetune(tiny, config, out_dir=tmp_path / "x", resume=wrong_kind)

    # Resuming the last checkpoint of an ended run trains nothing and restores the best epoch.
    ended = Recorder()
    done = finetune(
        tiny, config, out_dir=tmp_path / "ended", reporter=ended, resume=whole.checkpoint_at(3)
    )
    assert ended.epochs == [] and ended.started == []
    assert done.training["epochs_run"] == 3 and done.training["best_epoch"] == 1
    x = tiny.x_test.astype("float32") / 255
    np.testing.assert_array_equal(
        np.asarray(done.model.predict_on_batch(x)), np.asarray(want.model.predict_on_batch(x))
    )


@pytest.mark.slow
@pytest.mark.parametrize("decoder_output", ["bn_relu", "sigmoid"])
def test_pretrain_cut_inside_ae02_resumes_without_retraining_ae01(tiny, tmp_path, decoder_output):
    stage = StageConfig(epochs=2, batch_size=10)
    config = PretrainConfig(
        ae01=StageConfig(epochs=1, batch_size=10),
        ae02=stage,
        ae03=StageConfig(epochs=1, batch_size=10),
        validation_fraction=0.25,
        decoder_output=decoder_output,
    )
    cut = Recorder(stop_at=("ae02", 2))
    first = pretrain(tiny, config, out_dir=tmp_path / "cut", reporter=cut)
    checkpoint = cut.checkpoint_at(1, "ae02")
    assert first.cancelled and checkpoint.stage == "ae02"

    again = Recorder()
    got = pretrain(tiny, config, out_dir=tmp_path / "again", reporter=again, resume=checkpoint)
    assert again.started == ["ae02", "ae03", PROBE_STAGE]
    assert [(s, e) for s, e, _ in again.epochs] == [("ae02", 2), ("ae03", 1)]
    ae01 = got.models["ae01"].variables
    for i, variable in enumerate(ae01):
        np.testing.assert_array_equal(variable.numpy(), checkpoint.arrays[f"ae01/{i:04d}"])
    assert got.stages["ae01"] == first.stages["ae01"]
    assert [got.stages[s]["epochs_run"] for s in ("ae01", "ae02", "ae03")] == [1, 2, 1]
    manifest = artifacts.read_json(tmp_path / "again" / "pretrain.json")
    assert manifest["trained_stages"] == ["ae01", "ae02", "ae03"]
    assert manifest["decoder_output"] == decoder_output
    assert manifest["split"] == tiny.split_validation(fraction=0.25, seed=0).record()
    rows = (tmp_path / "again" / "metrics.csv").read_text().splitlines()[1:]
    assert sorted({tuple(r.split(",")[:2]) for r in rows}) == [
        ("ae01", "1"),
        ("ae02", "1"),
        ("ae02", "2"),
        ("ae03", "1"),
    ]
    assert len(rows) == 8  # loss and val_loss of each epoch, once


@pytest.mark.slow
def test_tune_resume_fails_the_dead_trial_and_runs_only_the_rest(tiny, tmp_path):
    config = TuneConfig(
        n_trials=3,
        epochs=1,
        batch_size=15,
        kernel_sizes=[3],
        optimizers=["adam", "sgd", "rmsprop"],
        validation_fraction=0.25,
        pruning=False,
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    dying = Recorder(die_at=("trial-1", 1))
    with pytest.raises(_WorkerDied):
        tune(tiny, config, out_dir=tmp_path, storage=storage, reporter=dying)
    last = Checkpoint.from_bytes(dying.checkpoints[-1])
    assert (last.stage, last.epoch, last.state["trials"]) == ("tune", 1, [0])
    assert last.state["started"] == [0, 1]
    study = optuna.load_study(study_name=config.study_name, storage=storage)
    assert study.trials[1].state == optuna.trial.TrialState.RUNNING

    again = Recorder()
    tune(tiny, config, out_dir=tmp_path, storage=storage, reporter=again, resume=last)
    trials = optuna.load_study(study_name=config.study_name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    # The dead trial's grid point is tried again, so the whole grid still gets a score.
    assert trials[2].params == trials[1].params
    assert {t.params["optimizer"] for t in trials if t.state.name == "COMPLETE"} == {
        "adam",
        "sgd",
        "rmsprop",
    }
    assert [(t.number, t.state) for t in again.trials] == [
        (1, "fail"),
        (2, "complete"),
        (3, "complete"),
    ]
    final = Checkpoint.from_bytes(again.checkpoints[-1])
    assert (final.epoch, final.state["trials"], final.state["abandoned"]) == (3, [0, 2, 3], [1])


@pytest.mark.slow
def test_tune_resume_after_a_death_in_the_grids_last_cell_runs_it_again(tiny, tmp_path):
    """The dead trial held the grid's last cell: failing it on resume must not stop the
    study from outside its optimize loop (Optuna's GridSampler calls Study.stop() once
    every cell has a trial; Study.tell would run that hook and raise)."""
    config = TuneConfig(
        n_trials=2,
        epochs=1,
        batch_size=15,
        kernel_sizes=[3],
        optimizers=["adam", "sgd"],
        validation_fraction=0.25,
        pruning=False,
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    dying = Recorder(die_at=("trial-1", 1))
    with pytest.raises(_WorkerDied):
        tune(tiny, config, out_dir=tmp_path, storage=storage, reporter=dying)
    last = Checkpoint.from_bytes(dying.checkpoints[-1])

    again = Recorder()
    got = tune(tiny, config, out_dir=tmp_path, storage=storage, reporter=again, resume=last)
    trials = optuna.load_study(study_name=config.study_name, storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[2].params == trials[1].params
    assert got.best_value is not None and not got.cancelled


def test_a_checkpoint_from_before_new_parameters_still_resumes():
    """Fields added since a checkpoint was taken read as their defaults (the old
    behaviour): an upgrade does not cost a run its resume; other values are refused."""
    from jobspec.params import FinetuneConfig
    from worker.ml.checkpoint import Checkpoint, CheckpointError, check_resume

    config = FinetuneConfig(encoder="scratch", epochs=3)
    key = {"config": config.model_dump(mode="json"), "dataset": "abc"}
    old = {k: v for k, v in key["config"].items() if k not in ("split_seed", "kernel_sizes")}
    taken = Checkpoint("finetune", 1, {"run": {"config": old, "dataset": "abc"}}, {})
    check_resume(taken, stages=("finetune",), key=key, config_type=FinetuneConfig)
    with pytest.raises(CheckpointError, match="other parameters"):
        check_resume(taken, stages=("finetune",), key=key)  # compared as stored: differs
    longer = {"run": {"config": {**old, "epochs": 4}, "dataset": "abc"}}
    other = Checkpoint("finetune", 1, longer, {})
    with pytest.raises(CheckpointError, match="other parameters"):
        check_resume(other, stages=("finetune",), key=key, config_type=FinetuneConfig)
    elsewhere = Checkpoint("finetune", 1, {"run": {"config": old, "dataset": "xyz"}}, {})
    with pytest.raises(CheckpointError, match="other parameters or data"):
        check_resume(elsewhere, stages=("finetune",), key=key, config_type=FinetuneConfig)
