"""The new-run form's presets (jobspec/presets.py): every preset of every kind is a valid
config of that kind within the site's default limits, a preset picked after any other gives
exactly its own values, and no preset leaves a short run's BatchNorm averages unsettled."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobspec import kinds, presets
from jobspec.builtin_kinds import FINETUNE, PRETRAIN, TUNE
from jobspec.params import FinetuneConfig, PretrainConfig, TuneConfig
from jobspec.presets import PresetName
from store.runs import limits
from store.settings import Settings

WITH_PRESETS = [name for name in kinds.names() if presets.of(name)]
CIFAR10_TRAIN = 50_000  # the data the seed's settings were written for


def test_every_builtin_kind_offers_every_preset_once_with_words():
    assert set(WITH_PRESETS) >= {PRETRAIN.name, TUNE.name, FINETUNE.name}
    for kind in WITH_PRESETS:
        assert list(presets.of(kind)) == list(PresetName)
    for name in PresetName:
        assert presets.INFO[name].label and presets.INFO[name].note


@pytest.mark.parametrize("kind", WITH_PRESETS)
@pytest.mark.parametrize("name", list(PresetName))
def test_each_preset_is_a_valid_config_of_its_kind_within_the_default_limits(kind, name):
    config = presets.of(kind)[name]
    model = kinds.get(kind).params
    assert isinstance(config, model)
    again = model.model_validate(config.model_dump(mode="json"))  # what the form posts back
    assert again == config
    limits.check_params(Settings(), kind, again)  # raises InvalidRequest when over a limit


def test_the_seed_preset_is_the_models_defaults():
    for kind in WITH_PRESETS:
        assert presets.of(kind)[PresetName.SEED] == kinds.get(kind).params()


def test_presets_set_the_fields_a_quick_run_needs():
    for kind in WITH_PRESETS:
        assert {"max_train_images", "steps_per_epoch", "bn_momentum"} <= set(presets.controls(kind))
    pretrain = set(presets.controls(PRETRAIN.name))
    assert {
        f"{stage}.{field}"
        for stage in ("ae01", "ae02", "ae03")
        for field in ("epochs", "batch_size")
    } <= pretrain
    assert {"n_trials", "epochs", "batch_size"} <= set(presets.controls(TUNE.name))
    assert {"epochs", "batch_size", "early_stopping.patience"} <= set(
        presets.controls(FINETUNE.name)
    )


def _apply(values: dict[str, Any], sets: dict[str, Any]) -> dict[str, Any]:
    """What the form's fields hold after a preset's button: its values at its paths."""
    out = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for path, value in sets.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(WITH_PRESETS),
    picks=st.lists(st.sampled_from(list(PresetName)), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
    validation=st.floats(0.05, 0.5),
)
def test_any_sequence_of_picks_ends_valid_with_the_last_presets_values(
    kind, picks, seed, validation
):
    model = kinds.get(kind).params
    # The user's own fields, which no preset names, survive every pick.
    values = model(seed=seed, validation_fraction=validation).model_dump(mode="json")
    for name in picks:
        values = _apply(values, presets.values(kind, name))
    config = model.model_validate(values)
    assert (config.seed, config.validation_fraction) == (seed, validation)
    dumped = config.model_dump(mode="json")
    assert _apply(dumped, presets.values(kind, picks[-1])) == dumped


def _model_steps(kind: str, config: Any, n_train: int) -> int:
    """Batches one model of the job trains before it is scored (at least)."""
    job = kinds.get(kind)
    if isinstance(config, PretrainConfig):
        stages = {s: config.stage(s).epochs for s in job.plan(config)}
    elif isinstance(config, TuneConfig):
        stages = dict.fromkeys(job.plan(config), config.epochs)  # each trial is a new model
    else:
        assert isinstance(config, FinetuneConfig)
        least = min(config.epochs, config.early_stopping.patience + 1)
        stages = dict.fromkeys(job.plan(config), least)
    steps = []
    for stage, epochs in stages.items():
        images = job.stage_images(config, stage, n_train)[0]
        steps.append(math.ceil(images / job.batch_size(config, stage)) * epochs)
    return min(steps)


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(WITH_PRESETS),
    name=st.sampled_from(list(PresetName)),
    extra=st.integers(0, 10**6),
)
def test_no_preset_leaves_batchnorm_unsettled_on_the_data_it_is_meant_for(kind, name, extra):
    """BatchNorm's moving averages forget their start as momentum**steps: after 5 time
    constants (5 / (1 - momentum) steps) 99% of it is gone. Fewer, and inference-mode
    scores stay at chance (the field's help text). Quick look is meant for any data set of
    at least its sample; the others for CIFAR-10-sized data."""
    config: Any = presets.of(kind)[name]
    least = config.max_train_images or CIFAR10_TRAIN
    steps = _model_steps(kind, config, least + extra)
    assert steps * (1 - config.bn_momentum) >= 5, (kind, name, steps, config.bn_momentum)
