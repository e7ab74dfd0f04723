"""Map a run kind to the training core's job, and its result to what the store keeps.

Runs in the pool child (Keras already loaded). Each job's module is imported when a run of
its kind starts: tuning alone pulls in Optuna, and a kind never run costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from jobspec import kinds
from worker.ml.checkpoint import Checkpoint
from worker.ml.datasets.dataset import Dataset
from worker.ml.reporting import Reporter


def run(
    kind: str,
    params: dict,
    *,
    dataset: Dataset,
    out_dir: Path,
    recorder: Reporter,
    parent_dir: Path | None,
    study_name: str | None,
    storage_url: str,
    resume: Checkpoint | None = None,
):
    """Returns (status, result, files) for the run; resume continues from a checkpoint."""
    if kind not in kinds.names():
        raise ValueError(f"unknown run kind {kind!r}")
    config = kinds.get(kind).params(**params)
    if kind == "pretrain":
        from worker.ml.pretrain import pretrain

        res = pretrain(dataset, config, out_dir=out_dir, reporter=recorder, resume=resume)
        result = {
            "stages": res.stages,
            "test_reconstruction_loss": res.test_reconstruction_loss,
            "trained_stages": [s for s, v in res.stages.items() if not v["cancelled"]],
            "decoder_output": config.decoder_output,
            "reconstruction": res.reconstruction,
            "probe_errors": res.probe_errors,
        }
    elif kind == "tune":
        from worker.ml.tune import tune

        config = config.model_copy(update={"study_name": study_name or config.study_name})
        res = tune(
            dataset,
            config,
            out_dir=out_dir,
            storage=_optuna_storage(storage_url),
            pretrained_dir=parent_dir,
            reporter=recorder,
            resume=resume,
        )
        result = {
            "best_params": res.best_params,
            "best_value": res.best_value,
            "study_name": res.study_name,
            "trials": len(res.trials),
        }
    elif kind == "finetune":
        from worker.ml.finetune import finetune

        res = finetune(
            dataset,
            config,
            out_dir=out_dir,
            pretrained_dir=parent_dir,
            reporter=recorder,
            resume=resume,
        )
        result = {
            "training": res.training,
            "evaluation": res.evaluation.summary() if res.evaluation else None,
        }
    else:  # registered (jobspec.kinds) but not trained here: a new kind needs its branch
        raise ValueError(f"no training function for run kind {kind!r}")
    result["split"] = res.split  # {"seed", "fraction", "n_train", "n_val", "fingerprint"}
    return ("cancelled" if res.cancelled else "succeeded"), result, res.files


def _optuna_storage(url: str):
    """Optuna's RDB storage on our database; SQLite waits for locks instead of failing."""
    import optuna

    kwargs = (
        {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
