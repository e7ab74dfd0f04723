"""The built-in job kinds: layer-wise pretraining, tuning one stage, finetuning a classifier.

Each is one `register(JobKind(...))`; `jobspec.kinds` imports this module when the
registry is first read. Their training functions are in `worker/entries.py`. Code written
for one of them in particular (an ablation study arms finetunes; the first-run page
launches a pretrain) names it as `PRETRAIN.name`, never by a retyped string.
"""

from __future__ import annotations

from typing import Any

from jobspec import memory
from jobspec.kinds import Features, JobKind, Keep, RankKey, SplitPlan, register
from jobspec.params import FinetuneConfig, PretrainConfig, TuneConfig
from jobspec.stages import AE01, AE02, AE03, FINETUNE_STAGE, STAGES, TRIAL_STAGE

# images/s when nothing of a model was measured yet: the README's CPU benchmark of the
# stacked finetune (bench/train_overhead.py, ~70 img/s) and rough CPU ratios for the rest.
# A run's first finished epoch replaces them.
AE_RATES = {AE01: 400.0, AE02: 250.0, AE03: 150.0}
CLASSIFIER_RATES = {"stacked": 70.0, "single": 150.0}


def _split(config: PretrainConfig | TuneConfig | FinetuneConfig) -> SplitPlan:
    """The three built-in models share their split and quick-run fields."""
    return SplitPlan(config.validation_fraction, config.max_train_images, config.steps_per_epoch)


# --- pretrain ---


def _pretrain_plan(config: PretrainConfig) -> dict[str, int]:
    return {stage: config.stage(stage).epochs for stage in STAGES}


def _pretrain_columns(params: dict[str, Any]) -> list[list[str]]:
    stages = [params.get(s, {}) for s in STAGES]
    optimizers = {s.get("optimizer") for s in stages}
    optimizer = (
        "/".join(s.get("optimizer", "?") for s in stages)
        if len(optimizers) > 1
        else str(optimizers.pop())
    )
    return [
        ["kernels", "/".join(str(s.get("kernel_size", "?")) for s in stages)],
        ["optimizer", optimizer],
        ["epochs", "/".join(str(s.get("epochs", "?")) for s in stages)],
    ]


def _pretrain_memory(config: PretrainConfig) -> float:
    return memory.worst_mb((memory.stage_floats(s), config.stage(s).batch_size) for s in STAGES)


PRETRAIN = register(
    JobKind(
        name="pretrain",
        params=PretrainConfig,
        entry="worker.entries:pretrain",
        plan=_pretrain_plan,
        # The last stage trained counts: a cancelled pretrain is ranked by what it reached.
        ranking=tuple(RankKey(f"{s}/val_loss", f"{s} val loss") for s in reversed(STAGES)),
        columns=_pretrain_columns,
        split=_split,
        batch_size=lambda config, stage: config.stage(stage).batch_size,
        default_rates=AE_RATES,
        batch_memory_mb=_pretrain_memory,
        features=Features(experiment_root=True, reconstructions=True),
        provides=lambda result: tuple(result.get("trained_stages") or ()),
        parent_files=("pretrain.json", *(f"{stage}.weights.h5" for stage in STAGES)),
    )
)


# --- tune ---


def _tune_parents(config: TuneConfig) -> tuple[str, ...]:
    """The stages below the tuned one are loaded frozen from a pretrain run."""
    return STAGES[: STAGES.index(config.stage)]


def _tune_columns(params: dict[str, Any]) -> list[list[str]]:
    return [
        ["stage", str(params.get("stage", "?"))],
        ["trials", str(params.get("n_trials", "?"))],
        ["kernels", ",".join(str(k) for k in params.get("kernel_sizes", []))],
    ]


TUNE = register(
    JobKind(
        name="tune",
        params=TuneConfig,
        entry="worker.entries:tune",
        plan=lambda config: {TRIAL_STAGE: config.n_trials * config.epochs},
        parents=_tune_parents,
        ranking=(RankKey(f"{TRIAL_STAGE}-*/val_loss", "best val loss"),),
        result_score="best_value",
        columns=_tune_columns,
        split=_split,
        batch_size=lambda config, stage: config.batch_size,
        rate_model=lambda config, stage: config.stage,  # a trial trains the tuned stage
        default_rates=AE_RATES,
        batch_memory_mb=lambda config: memory.worst_mb(
            [(memory.stage_floats(config.stage), config.batch_size)]
        ),
        trials_field="n_trials",
        features=Features(
            study=True,
            parallel=True,
            parent_label="Pretrain run (for ae02/ae03)",
            no_parent_label="none (tuning ae01)",
        ),
    )
)


# --- finetune ---


def _finetune_parents(config: FinetuneConfig) -> tuple[str, ...]:
    """Stacked uses all three encoders, single only AE01's, scratch none."""
    return {"stacked": STAGES, "single": STAGES[:1]}.get(config.encoder, ())


def _finetune_keeps(config: FinetuneConfig) -> Keep | None:
    stopping = config.early_stopping
    if not stopping.restore_best_weights:
        return None
    return Keep(FINETUNE_STAGE, stopping.monitor, stopping.mode, stopping.min_delta)


def _finetune_columns(params: dict[str, Any]) -> list[list[str]]:
    pairs = [
        ["encoder", str(params.get("encoder", "?"))],
        ["augment", "on" if params.get("augment") else "off"],
    ]
    if params.get("freeze_encoder"):
        pairs.append(["encoder", "frozen"])
    if params.get("encoder") == "scratch":
        pairs.append(["kernel", str(params.get("kernel_size", "?"))])
    return pairs


FINETUNE = register(
    JobKind(
        name="finetune",
        params=FinetuneConfig,
        entry="worker.entries:finetune",
        plan=lambda config: {FINETUNE_STAGE: config.epochs},
        parents=_finetune_parents,
        ranking=(
            RankKey(f"{FINETUNE_STAGE}/val_accuracy", "val acc"),
            RankKey(f"{FINETUNE_STAGE}/val_loss", "val loss"),
        ),
        columns=_finetune_columns,
        keeps=_finetune_keeps,
        split=_split,
        batch_size=lambda config, stage: config.batch_size,
        rate_model=lambda config, stage: config.model_architecture,
        default_rates=CLASSIFIER_RATES,
        batch_memory_mb=lambda config: memory.worst_mb(
            [(memory.classifier_floats(config.model_architecture), config.batch_size)]
        ),
        features=Features(
            evaluation=True,
            parent_label="Pretrained weights",
            no_parent_label="from scratch (encoder: scratch)",
        ),
        file_prefixes={FINETUNE_STAGE: "classifier"},
    )
)
