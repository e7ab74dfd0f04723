"""Optuna search over kernel size x optimizer (x learning rate) for one autoencoder stage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import optuna

from jobspec import kinds
from jobspec.builtin_kinds import TUNE
from jobspec.params import DEFAULT_LEARNING_RATES, TuneConfig
from jobspec.status import TrialState
from worker.ml import artifacts
from worker.ml.checkpoint import Checkpoint, check_resume, run_key
from worker.ml.datasets.dataset import Dataset
from worker.ml.models import build_autoencoder, encoder_of, set_bn_momentum
from worker.ml.pipeline import make_input
from worker.ml.pretrain import FeatureReconstruction, load_pretrained
from worker.ml.reporting import Reporter, TrialReport
from worker.ml.training import fit, make_optimizer, runtime


@dataclass
class TuneResult:
    """The best parameters found and every trial of the study."""

    best_params: dict
    best_value: float | None
    trials: list[dict]
    study_name: str
    storage: str | optuna.storages.BaseStorage
    cancelled: bool
    files: list[Path] = field(default_factory=list)
    split: dict = field(default_factory=dict)  # Split.record() of the split trials train on


class _PruneOnEpoch(keras.callbacks.Callback):
    """Reports val_loss to the trial each epoch; stops training once Optuna says prune."""

    def __init__(self, trial: optuna.Trial):
        super().__init__()
        self.trial = trial
        self.pruned = False

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float(logs["val_loss"]), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True


def default_storage(out_dir: Path) -> str:
    """An SQLite file in the output folder; several local processes can share it."""
    return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"


def make_study(config: TuneConfig, storage: str | optuna.storages.BaseStorage) -> optuna.Study:
    """Create or join the named study: a grid over the choices, or TPE with learning rate."""
    sampler: optuna.samplers.BaseSampler
    if config.tune_learning_rate:
        sampler = optuna.samplers.TPESampler(seed=config.seed)
    else:
        grid: dict[str, Sequence[int | str]] = {
            "kernel_size": config.kernel_sizes,
            "optimizer": config.optimizers,
        }
        sampler = optuna.samplers.GridSampler(grid, seed=config.seed)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if config.pruning
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=config.study_name,
        storage=storage,
        direction="minimize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def tune(
    dataset: Dataset,
    config: TuneConfig,
    *,
    out_dir: Path,
    storage: str | optuna.storages.BaseStorage | None = None,
    pretrained_dir: Path | None = None,
    reporter: Reporter | None = None,
    resume: Checkpoint | None = None,
) -> TuneResult:
    """Run this process's share of trials of the study; return the study's best so far.

    With `resume` (a checkpoint of this run), only the trials it had not finished are run;
    its trials left RUNNING by a dead worker are marked failed first.
    """
    reporter = reporter or Reporter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(out_dir)
    earlier = kinds.parent_stages(TUNE.name, config)
    if earlier and pretrained_dir is None:
        raise ValueError(f"tuning {config.stage} needs a pretrain output folder for {earlier}")
    key = run_key(config, dataset)
    check_resume(resume, stages=(TUNE.name,), key=key, config_type=type(config))
    frozen = (
        [encoder_of(m) for m in load_pretrained(pretrained_dir, earlier).values()]
        if earlier and pretrained_dir is not None  # checked above: both or neither
        else []
    )
    split = dataset.split_validation(
        fraction=config.validation_fraction, seed=config.split, max_images=config.max_train_images
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(config, storage)
    state = {"cancelled": False}
    trials = _TrialLog(study, reporter, resume, key, state=state, n_trials=config.n_trials)
    objective = _objective(config, frozen, split, reporter, state, study, trials)
    remaining = config.n_trials - len(trials.finished)
    if remaining > 0:
        study.optimize(
            objective,
            n_trials=remaining,
            callbacks=[_report_trial(reporter), trials.ended],
            catch=(FloatingPointError,),
        )
    return _result(study, config, storage, state["cancelled"], out_dir, split.record())


class _TrialLog:
    """Which trials of the study this run started and finished, checkpointed per trial.

    A run's checkpoint is taken when a trial starts (so a worker dying in it leaves its
    number behind) and when it ends. Resuming fails the trials a dead worker left RUNNING,
    queues their parameters again and counts the finished ones, so the run makes up
    n_trials in all. A run asked to pause stops between trials, never inside one: after a
    trial's end checkpoint, while trials are left.
    """

    def __init__(
        self,
        study: optuna.Study,
        reporter: Reporter,
        resume: Checkpoint | None,
        key: dict,
        *,
        state: dict | None = None,
        n_trials: int | None = None,
    ):
        self.study, self.reporter, self.key = study, reporter, key
        self.state = state if state is not None else {"cancelled": False}
        self.n_trials = n_trials
        self.wanted = reporter.wants_checkpoints()
        known = resume.state if resume is not None else {}
        self.started: list[int] = list(known.get("started", []))
        self.abandoned: list[int] = list(known.get("abandoned", []))
        self.finished: list[int] = list(known.get("trials", []))
        if resume is not None and "sampler" in known:
            restore_sampler(study.sampler, known["sampler"], resume.arrays)
        if self.started:
            self._settle()

    def _settle(self) -> None:
        """Fail the trials a dead worker left RUNNING; count those it finished unrecorded."""
        by_number = {t.number: t for t in self.study.get_trials(deepcopy=False)}
        for number in self.started:
            trial = by_number.get(number)
            if trial is None or number in self.finished or number in self.abandoned:
                continue
            if trial.state == optuna.trial.TrialState.RUNNING:
                failed = self._fail(trial)
                self.abandoned.append(number)
                self.reporter.trial_ended(trial_report(failed))
                self._retry(failed)
            elif trial.state.is_finished():  # it ended after the last checkpoint was taken
                self.finished.append(number)

    def _fail(self, trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
        """Mark a dead worker's trial failed in the storage, as Optuna's own
        `fail_stale_trials` does: `Study.tell` would run the sampler's after-trial hook
        outside an optimize loop, and a grid whose last cell was the dead trial calls
        `Study.stop()` there, which raises."""
        storage = self.study._storage
        storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        return storage.get_trial(trial._trial_id)

    def _retry(self, trial: optuna.trial.FrozenTrial) -> None:
        """Queue the point a dead trial never scored, with its grid cell, as Optuna's
        RetryFailedTrialCallback does; the next trial of this run takes it up."""
        system_attrs = {**trial.system_attrs, "failed_trial": trial.number}
        waiting = optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs=system_attrs,
        )
        self.study.add_trial(waiting)

    def started_trial(self, number: int) -> None:
        """A trial of this run begins."""
        self.started.append(number)
        self._checkpoint()

    def ended(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: a trial of this run is done, whatever its state."""
        self.finished.append(trial.number)
        self._checkpoint()
        left = self.n_trials is None or len(self.finished) < self.n_trials
        if self.wanted and left and self.reporter.should_pause():
            self.state["cancelled"] = True
            study.stop()

    def _checkpoint(self) -> None:
        if self.wanted:
            sampler, arrays = capture_sampler(self.study.sampler)
            state = {
                "run": self.key,
                "trials": list(self.finished),
                "started": list(self.started),
                "abandoned": list(self.abandoned),
                "sampler": sampler,
            }
            self.reporter.checkpoint(Checkpoint(TUNE.name, len(self.finished), state, arrays))


def _sampler_rngs(sampler: optuna.samplers.BaseSampler) -> list[np.random.RandomState]:
    """The random states a seeded sampler draws from, in a fixed order: its own and, for
    TPE, its random sampler's (the first trials)."""
    found = []
    for owner in (sampler, getattr(sampler, "_random_sampler", None)):
        rng = getattr(getattr(owner, "_rng", None), "rng", None)
        if isinstance(rng, np.random.RandomState):
            found.append(rng)
    return found


def capture_sampler(
    sampler: optuna.samplers.BaseSampler,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Where the sampler's random draws stand, for a checkpoint: a run resumed (after a
    pause) draws what the uninterrupted run would have drawn next."""
    meta, arrays = [], {}
    for index, rng in enumerate(_sampler_rngs(sampler)):
        name, keys, pos, has_gauss, cached = rng.get_state(legacy=True)
        arrays[f"sampler/{index:04d}"] = np.array(keys, dtype=np.uint32, copy=True)
        meta.append({"name": name, "pos": int(pos), "gauss": [int(has_gauss), float(cached)]})
    return meta, arrays


def restore_sampler(
    sampler: optuna.samplers.BaseSampler, meta: list[dict], arrays: dict[str, np.ndarray]
) -> None:
    """Inverse of capture_sampler; a sampler of another shape starts from its seed."""
    rngs = _sampler_rngs(sampler)
    names = [f"sampler/{index:04d}" for index in range(len(meta))]
    if len(rngs) != len(meta) or any(name not in arrays for name in names):
        return
    for rng, saved, name in zip(rngs, meta, names, strict=True):
        has_gauss, cached = saved["gauss"]
        rng.set_state((saved["name"], arrays[name], saved["pos"], has_gauss, cached))


def _objective(config, frozen, split, reporter, state, study, trials: _TrialLog):
    def objective(trial: optuna.Trial) -> float:
        trials.started_trial(trial.number)
        kernel_size = trial.suggest_categorical("kernel_size", config.kernel_sizes)
        optimizer = trial.suggest_categorical("optimizer", config.optimizers)
        lr = DEFAULT_LEARNING_RATES[optimizer]
        if config.tune_learning_rate:
            lr = trial.suggest_float(
                "learning_rate", config.learning_rate_min, config.learning_rate_max, log=True
            )
        trial.set_user_attr("start", time.time())
        with runtime(config.runtime, config.seed + trial.number):
            autoencoder = build_autoencoder(config.stage, kernel_size)
            set_bn_momentum(autoencoder, config.bn_momentum)
            model = FeatureReconstruction(autoencoder, frozen)
            model.compile(
                optimizer=make_optimizer(optimizer, lr), jit_compile=config.runtime.jit_compile
            )
            pruning = _PruneOnEpoch(trial)
            bs = config.batch_size
            result = fit(
                model,
                stage=f"trial-{trial.number}",
                train=make_input(
                    split.x_train,
                    batch_size=bs,
                    shuffle=True,
                    seed=config.seed,
                    max_steps=config.steps_per_epoch,
                ),
                val=make_input(split.x_val, batch_size=bs, shuffle=False),
                epochs=config.epochs,
                reporter=reporter,
                callbacks=[pruning],
            )
        if result.cancelled:
            state["cancelled"] = True
            study.stop()
            raise optuna.TrialPruned("the run was cancelled")
        if pruning.pruned:
            raise optuna.TrialPruned()
        value = min(result.history["val_loss"])
        if value != value:  # NaN: a diverged trial is a failure, not a score
            raise FloatingPointError("val_loss is NaN")
        return value

    return objective


def _report_trial(reporter: Reporter):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        reporter.trial_ended(trial_report(trial))

    return callback


def trial_report(trial: optuna.trial.FrozenTrial) -> TrialReport:
    """A finished trial, as the reporter sees it."""
    seconds = (
        (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else 0.0
    )
    return TrialReport(
        number=trial.number,
        params=dict(trial.params),
        state=TrialState.of(trial.state),
        value=trial.value,
        intermediate=dict(trial.intermediate_values),
        seconds=seconds,
    )


def _result(study, config, storage, cancelled, out_dir, split: dict) -> TuneResult:
    trials = [vars(trial_report(t)) for t in study.trials if t.state.is_finished()]
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best_params = study.best_params if completed else {}
    best_value = study.best_value if completed else None
    if completed and "learning_rate" not in best_params:
        best_params["learning_rate"] = DEFAULT_LEARNING_RATES[best_params["optimizer"]]
    manifest = {
        "job": TUNE.name,
        "config": config.model_dump(mode="json"),
        "study_name": study.study_name,
        "best_params": best_params,
        "best_value": best_value,
        "split": split,
        "trials": trials,
        "cancelled": cancelled,
    }
    files = [artifacts.write_json(out_dir / "tune.json", manifest)]
    return TuneResult(
        best_params, best_value, trials, study.study_name, storage, cancelled, files, split
    )
