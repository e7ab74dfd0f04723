"""Job configs from command-line values, with pydantic errors turned into option names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from cli.errors import CliError
from jobspec.stages import STAGES  # no imports of its own: --help stays instant

if TYPE_CHECKING:  # the config module imports Keras; only the commands that train load it
    from pydantic import BaseModel, ValidationError
    from pydantic_core import ErrorDetails

    from jobspec.params import FinetuneConfig, PretrainConfig, TuneConfig

Model = TypeVar("Model", bound="BaseModel")  # validated() returns the model it is given
# Per-stage pretrain settings: the StageConfig field and how to read one value of it.
STAGE_FIELDS: dict[str, Callable[[str], Any]] = {
    "kernel_size": int,
    "optimizer": str,
    "learning_rate": float,
    "epochs": int,
    "batch_size": int,
}
# Config fields whose option is not simply --field-name.
OPTION_NAMES = {
    "n_trials": "--trials",
    "kernel_sizes": "--kernel-sizes",
    "optimizers": "--optimizers",
    "learning_rate_min": "--lr-min",
    "learning_rate_max": "--lr-max",
    "restore_best_weights": "--restore-best",
}


def option_name(field: str) -> str:
    """The command-line option that sets a config field."""
    return OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


def split_list(option: str, raw: str, convert: Callable[[str], Any]) -> list[Any]:
    """'3,5,7' -> [3, 5, 7]; a value that does not convert names the option."""
    values = [part.strip() for part in raw.split(",")]
    try:
        return [convert(value) for value in values]
    except ValueError as exc:
        raise CliError(f"{option}: cannot read {raw!r} ({exc})") from exc


def per_stage(field: str, raw: str) -> list[Any]:
    """One value for every stage, or one per stage ('3' or '3,5,7')."""
    option = option_name(field)
    values = split_list(option, raw, STAGE_FIELDS[field])
    if len(values) not in (1, len(STAGES)):
        raise CliError(
            f"{option}: give 1 value or 3 comma-separated values (ae01,ae02,ae03), got {raw!r}"
        )
    return values * len(STAGES) if len(values) == 1 else values


def stage_settings(raw_by_field: Mapping[str, str | None]) -> dict[str, dict[str, Any]]:
    """{'ae01': {...}, 'ae02': {...}, 'ae03': {...}} from per-stage option strings."""
    settings: dict[str, dict[str, Any]] = {stage: {} for stage in STAGES}
    for field, raw in raw_by_field.items():
        if raw is None:
            continue
        for stage, value in zip(STAGES, per_stage(field, raw), strict=True):
            settings[stage][field] = value
    return settings


def key_values(option: str, pairs: list[str]) -> dict[str, str]:
    """['rotation_range=20', ...] -> {'rotation_range': '20', ...}; pydantic converts."""
    result = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option}: expected KEY=VALUE, got {pair!r}")
        result[key.strip().replace("-", "_")] = value.strip()
    return result


def describe_error(error: ErrorDetails) -> tuple[str, str | None, str]:
    """(option, stage or None, problem) of one pydantic error; option is '' for a cross check."""
    loc = [part for part in error["loc"] if isinstance(part, str)]
    message = error["msg"].removeprefix("Value error, ")
    if not loc:  # a check across fields: its message names them
        return "", None, message
    value = error.get("input")
    problem = message if isinstance(value, dict) else f"{message}, got {value!r}"
    if loc[0] == "augmentation":
        return "--aug " + ".".join(loc[1:]), None, problem
    stage = loc[0] if loc[0] in STAGES else None
    return option_name(loc[-1]), stage, problem


def describe(exc: ValidationError) -> str:
    """All problems of a ValidationError on one line; one per stage merged into one."""
    stages: dict[tuple[str, str], list[str]] = {}
    for error in exc.errors():
        option, stage, problem = describe_error(error)
        stages.setdefault((option, problem), [])
        if stage is not None:
            stages[(option, problem)].append(stage)
    parts = []
    for (option, problem), where in stages.items():
        head = f"{option} ({', '.join(where)})" if where else option
        parts.append(f"{head}: {problem}" if head else problem)
    return "; ".join(parts)


def validated(model: type[Model], data: dict[str, Any]) -> Model:
    """model.model_validate(data), with a CliError naming the options on failure."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CliError(describe(exc)) from exc


def runtime(mixed_precision: bool, jit_compile: bool) -> dict[str, bool]:
    """The runtime section of every job config."""
    return {"mixed_precision": mixed_precision, "jit_compile": jit_compile}


def pretrain_config(*, stages: Mapping[str, str | None], **fields: Any) -> PretrainConfig:
    """PretrainConfig from per-stage option strings and the other fields."""
    from jobspec.params import PretrainConfig

    return validated(PretrainConfig, {**stage_settings(stages), **fields})


def tune_config(*, kernel_sizes: str, optimizers: str, **fields: Any) -> TuneConfig:
    """TuneConfig; the search space comes as comma-separated lists."""
    from jobspec.params import TuneConfig

    data = {
        "kernel_sizes": split_list("--kernel-sizes", kernel_sizes, int),
        "optimizers": split_list("--optimizers", optimizers, str),
        **fields,
    }
    return validated(TuneConfig, data)


def finetune_config(
    *, aug: list[str], early_stopping: dict[str, Any], **fields: Any
) -> FinetuneConfig:
    """FinetuneConfig; --aug KEY=VALUE pairs override the augmentation settings."""
    from jobspec.params import FinetuneConfig

    data = {"augmentation": key_values("--aug", aug), "early_stopping": early_stopping, **fields}
    return validated(FinetuneConfig, data)
