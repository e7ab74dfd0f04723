"""The built-in kinds' worker entry points (named by `entry=` in jobspec/builtin_kinds.py):
each calls one training function of `worker/ml` and shapes what the store keeps.

Runs in the pool child (Keras already loaded). The training modules are imported inside
each function: tuning alone pulls in Optuna, and a kind never run costs nothing.
"""

from __future__ import annotations

from jobspec.outcome import JobOutcome
from jobspec.params import FinetuneConfig, PretrainConfig, TuneConfig
from worker.jobs import JobContext


def pretrain(config: PretrainConfig, context: JobContext) -> JobOutcome:
    """Layer-wise pretraining: per-stage results, reconstructions and probe errors."""
    from store.settings import get_settings
    from worker.ml.pretrain import pretrain as train
    from worker.ml.probe import ProbeBudget

    settings = get_settings()  # what the autoencoders learned is probed within these budgets
    res = train(
        context.dataset,
        config,
        out_dir=context.out_dir,
        reporter=context.reporter,
        resume=context.resume,
        probe_budget=ProbeBudget(settings.learned_max_images, settings.learned_pca_points),
    )
    result = {
        "stages": res.stages,
        "test_reconstruction_loss": res.test_reconstruction_loss,
        "trained_stages": [s for s, v in res.stages.items() if not v["cancelled"]],
        "decoder_output": config.decoder_output,
        "reconstruction": res.reconstruction,
        "probe_errors": res.probe_errors,
    }
    return JobOutcome(res.cancelled, result, res.split, tuple(res.files))


def tune(config: TuneConfig, context: JobContext) -> JobOutcome:
    """An Optuna study on our database, under the run's study name."""
    from worker.ml.tune import tune as search

    config = config.model_copy(update={"study_name": context.study_name or config.study_name})
    res = search(
        context.dataset,
        config,
        out_dir=context.out_dir,
        storage=context.optuna_storage(),
        pretrained_dir=context.parent_dir,
        reporter=context.reporter,
        resume=context.resume,
    )
    result = {
        "best_params": res.best_params,
        "best_value": res.best_value,
        "study_name": res.study_name,
        "trials": len(res.trials),
    }
    return JobOutcome(res.cancelled, result, res.split, tuple(res.files))


def finetune(config: FinetuneConfig, context: JobContext) -> JobOutcome:
    """A classifier: its training summary and its test-set evaluation."""
    from worker.ml.finetune import finetune as train

    res = train(
        context.dataset,
        config,
        out_dir=context.out_dir,
        pretrained_dir=context.parent_dir,
        reporter=context.reporter,
        resume=context.resume,
    )
    result = {
        "training": res.training,
        "evaluation": res.evaluation.summary() if res.evaluation else None,
    }
    return JobOutcome(res.cancelled, result, res.split, tuple(res.files))
