"""Presets of the new-run form: named sets of parameters per job kind ("Quick look",
"Seed's settings", "Full"), defined once here as validated parameter models.

Each preset is an instance of its kind's params model, so it cannot hold a value the model
refuses (it is validated when this module is imported). What a preset *sets* is the union
of the fields any preset of the kind names explicitly (pydantic's `model_fields_set`,
nested models included): picking one sets every one of those fields, to its own value or
to the model's default, so switching from "Quick look" to "Seed's settings" also takes the
image cap off. Other fields (seed, kernel sizes, augmentation, ...) are left as they are.

Pure: pydantic and jobspec only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from jobspec.builtin_kinds import FINETUNE, PRETRAIN, TUNE
from jobspec.params import (
    EarlyStoppingConfig,
    FinetuneConfig,
    PretrainConfig,
    StageConfig,
    TuneConfig,
)


class PresetName(StrEnum):
    """The presets, in the order the form offers them."""

    QUICK = "quick"
    SEED = "seed"
    FULL = "full"


@dataclass(frozen=True)
class PresetInfo:
    """How the form names and explains a preset."""

    label: str
    note: str


INFO: Mapping[PresetName, PresetInfo] = {
    PresetName.QUICK: PresetInfo(
        "Quick look",
        "A stratified sample of 1,500 training images, every batch of it, a few epochs, "
        "batch 32 and BN momentum 0.9 (so the few hundred steps are enough for BatchNorm's "
        "averages to settle and scores leave chance): minutes on 2 CPU cores.",
    ),
    PresetName.SEED: PresetInfo(
        "Seed's settings",
        "The researcher's notebook settings (the form's defaults): every image, 10 epochs "
        "per autoencoder, 9 trials of 5 epochs, finetunes of up to 50 epochs with early "
        "stopping, batch 128, Keras' BN momentum 0.99; meant for CIFAR-10-sized data.",
    ),
    PresetName.FULL: PresetInfo(
        "Full",
        "Every image, trained longer: 20 epochs per autoencoder, trials of 10 epochs, "
        "finetunes of up to 100 epochs with early stopping after 10 epochs without "
        "improvement, batch 128, BN momentum 0.99; meant for a GPU.",
    ),
}

# Quick look: the demo's scale (backend/runs/welcome.py, cli/demo.py's --quick).
QUICK_IMAGES = 1500
QUICK_BATCH = 32
QUICK_BN_MOMENTUM = 0.9
_QUICK_STAGE = StageConfig(epochs=2, batch_size=QUICK_BATCH)
_FULL_STAGE = StageConfig(epochs=20, batch_size=128)

PRESETS: Mapping[str, Mapping[PresetName, BaseModel]] = {
    PRETRAIN.name: {
        PresetName.QUICK: PretrainConfig(
            ae01=_QUICK_STAGE,
            ae02=_QUICK_STAGE,
            ae03=_QUICK_STAGE,
            max_train_images=QUICK_IMAGES,
            steps_per_epoch=None,  # every batch of the sample: a cap is what leaves chance
            bn_momentum=QUICK_BN_MOMENTUM,
        ),
        PresetName.SEED: PretrainConfig(),
        PresetName.FULL: PretrainConfig(
            ae01=_FULL_STAGE, ae02=_FULL_STAGE, ae03=_FULL_STAGE, bn_momentum=0.99
        ),
    },
    TUNE.name: {
        PresetName.QUICK: TuneConfig(
            n_trials=3,
            epochs=2,
            batch_size=QUICK_BATCH,
            max_train_images=QUICK_IMAGES,
            steps_per_epoch=None,
            bn_momentum=QUICK_BN_MOMENTUM,
        ),
        PresetName.SEED: TuneConfig(),
        PresetName.FULL: TuneConfig(n_trials=9, epochs=10, batch_size=128, bn_momentum=0.99),
    },
    FINETUNE.name: {
        PresetName.QUICK: FinetuneConfig(
            epochs=4,
            batch_size=QUICK_BATCH,
            max_train_images=QUICK_IMAGES,
            steps_per_epoch=None,
            bn_momentum=QUICK_BN_MOMENTUM,
        ),
        PresetName.SEED: FinetuneConfig(),
        PresetName.FULL: FinetuneConfig(
            epochs=100,
            batch_size=128,
            early_stopping=EarlyStoppingConfig(patience=10),
            bn_momentum=0.99,
        ),
    },
}


def of(kind: str) -> Mapping[PresetName, BaseModel]:
    """A kind's presets ({} for a kind that declares none, e.g. a plug-in's)."""
    return PRESETS.get(kind, {})


def _set_paths(model: BaseModel, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The dotted paths a model names explicitly (nested models: their own named fields)."""
    paths: set[tuple[str, ...]] = set()
    for name in model.model_fields_set:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            paths |= _set_paths(value, (*prefix, name))
        else:
            paths.add((*prefix, name))
    return paths


def controls(kind: str) -> tuple[str, ...]:
    """The dotted parameter paths a kind's presets set, sorted."""
    paths: set[tuple[str, ...]] = set()
    for config in of(kind).values():
        paths |= _set_paths(config)
    return tuple(sorted(".".join(p) for p in paths))


def values(kind: str, name: PresetName) -> dict[str, Any]:
    """Dotted path -> the value a preset gives it, for every path the kind's presets set."""
    dumped = of(kind)[name].model_dump(mode="json")
    out: dict[str, Any] = {}
    for path in controls(kind):
        node: Any = dumped
        for part in path.split("."):
            node = node[part]
        out[path] = node
    return out
