"""The registry of job kinds: everything the web, the store and the worker need to know
about a kind, written once.

Per kind: its parameter model (title and help come from the model), its Celery task name,
the parent stages it needs, its stage/epoch plan (progress and ETAs), the metrics it is
ranked by and the parameters the runs table shows. Pure: pydantic and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from inspect import cleandoc

from pydantic import BaseModel, ValidationError

from jobspec.metrics import Goal, Metric, metric
from jobspec.params import FinetuneConfig, PretrainConfig, TuneConfig
from jobspec.stages import STAGES

__all__ = ["STAGES", "JobKind", "Keep", "RankKey", "get", "names", "register", "registered"]

TASK_PREFIX = "stacklab."
TRIAL_STAGE = "trial"  # a tune's epochs are logged under trial-0, trial-1, ...


@dataclass(frozen=True)
class RankKey:
    """A stored metric key a run is ranked by; "trial-*/..." stands for any trial's."""

    key: str
    label: str

    @property
    def metric(self) -> Metric:
        return metric(self.key)

    @property
    def pattern(self) -> bool:
        """Whether the key matches many stored keys (one per trial)."""
        return "*" in self.key


@dataclass(frozen=True)
class Keep:
    """Which epoch's model a stage keeps: the best by `monitor` (early stopping restoring
    its best weights), improving by more than `min_delta` as Keras counts it. A stage
    without a Keep keeps its last epoch."""

    stage: str
    monitor: str
    goal: Goal
    min_delta: float = 0.0

    def improves(self, value: float, kept: float | None) -> bool:
        """Whether `value` replaces the kept epoch whose monitor value is `kept`."""
        if kept is None:
            return True
        if self.goal == "min":
            return value + self.min_delta < kept
        return value - self.min_delta > kept


def _no_keep(config: BaseModel) -> Keep | None:
    return None


def _no_parents(config: BaseModel) -> tuple[str, ...]:
    return ()


def _no_plan(config: BaseModel) -> dict[str, int]:
    return {}


def _no_columns(params: dict) -> list[list[str]]:
    return []


@dataclass(frozen=True)
class JobKind:
    """One kind of job. The functions take the validated config (columns: stored params)."""

    name: str
    params: type[BaseModel]
    plan: Callable[[BaseModel], dict[str, int]] = _no_plan
    parents: Callable[[BaseModel], tuple[str, ...]] = _no_parents
    ranking: tuple[RankKey, ...] = ()
    # A field of the run's result that, when set, is its score (a tune's best trial value).
    result_score: str | None = None
    columns: Callable[[dict], list[list[str]]] = _no_columns
    title: str = ""  # default: the name, capitalised
    keeps: Callable[[BaseModel], Keep | None] = _no_keep

    def kept_epoch_rule(self, params: dict) -> Keep | None:
        """The Keep of a run's stored params (None: every stage keeps its last epoch)."""
        try:
            config = self.params(**(params or {}))
        except ValidationError:
            return None
        return self.keeps(config)

    @property
    def task(self) -> str:
        """The Celery task name the queue sends and the worker registers."""
        return TASK_PREFIX + self.name

    @property
    def label(self) -> str:
        """The kind's title on tabs and headings."""
        return self.title or self.name.replace("_", " ").capitalize()

    @property
    def help(self) -> str:
        """One paragraph on what the job does: the first of its model's docstring."""
        return cleandoc(self.params.__doc__ or "").split("\n\n", 1)[0].replace("\n", " ")

    def stage_plan(self, params: dict) -> dict[str, int]:
        """Stage -> epochs the job trains, defaults filled in; {} when params do not validate
        (a run stored under older rules has no plan rather than a wrong one)."""
        try:
            config = self.params(**(params or {}))
        except ValidationError:
            return {}
        return self.plan(config)


_REGISTRY: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add a kind (at import time; tests use `registered`)."""
    if kind.name in _REGISTRY:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


@contextmanager
def registered(kind: JobKind) -> Iterator[JobKind]:
    """A kind registered for the duration of a block, then removed."""
    register(kind)
    try:
        yield kind
    finally:
        _REGISTRY.pop(kind.name, None)


def names() -> tuple[str, ...]:
    """Every kind's name, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> JobKind:
    """A kind by name; KeyError names the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r} (known: {', '.join(_REGISTRY)})") from None


def job_params() -> dict[str, type[BaseModel]]:
    """Kind -> parameter model."""
    return {name: kind.params for name, kind in _REGISTRY.items()}


def task_names() -> dict[str, str]:
    """Kind -> Celery task name."""
    return {name: kind.task for name, kind in _REGISTRY.items()}


def parent_stages(name: str, config: BaseModel) -> tuple[str, ...]:
    """The pretrained stages a job needs from its parent run, in order (none: no parent)."""
    return get(name).parents(config)


def table_columns(name: str, params: dict) -> list[list[str]]:
    """[label, value] pairs of the parameters that tell runs of a kind apart in a list."""
    kind = _REGISTRY.get(name)
    return kind.columns(params) if kind else []


# --- The built-in kinds. ---


def _pretrain_plan(config: PretrainConfig) -> dict[str, int]:
    return {stage: config.stage(stage).epochs for stage in STAGES}


def _pretrain_columns(params: dict) -> list[list[str]]:
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


def _tune_parents(config: TuneConfig) -> tuple[str, ...]:
    """The stages below the tuned one are loaded frozen from a pretrain run."""
    return STAGES[: STAGES.index(config.stage)]


def _tune_columns(params: dict) -> list[list[str]]:
    return [
        ["stage", str(params.get("stage", "?"))],
        ["trials", str(params.get("n_trials", "?"))],
        ["kernels", ",".join(str(k) for k in params.get("kernel_sizes", []))],
    ]


def _finetune_parents(config: FinetuneConfig) -> tuple[str, ...]:
    """Stacked uses all three encoders, single only AE01's, scratch none."""
    return {"stacked": STAGES, "single": STAGES[:1]}.get(config.encoder, ())


def _finetune_keeps(config: FinetuneConfig) -> Keep | None:
    stopping = config.early_stopping
    if not stopping.restore_best_weights:
        return None
    return Keep("finetune", stopping.monitor, stopping.mode, stopping.min_delta)


def _finetune_columns(params: dict) -> list[list[str]]:
    pairs = [
        ["encoder", str(params.get("encoder", "?"))],
        ["augment", "on" if params.get("augment") else "off"],
    ]
    if params.get("freeze_encoder"):
        pairs.append(["encoder", "frozen"])
    if params.get("encoder") == "scratch":
        pairs.append(["kernel", str(params.get("kernel_size", "?"))])
    return pairs


register(
    JobKind(
        name="pretrain",
        params=PretrainConfig,
        plan=_pretrain_plan,
        # The last stage trained counts: a cancelled pretrain is ranked by what it reached.
        ranking=tuple(RankKey(f"{s}/val_loss", f"{s} val loss") for s in reversed(STAGES)),
        columns=_pretrain_columns,
    )
)
register(
    JobKind(
        name="tune",
        params=TuneConfig,
        plan=lambda config: {TRIAL_STAGE: config.n_trials * config.epochs},
        parents=_tune_parents,
        ranking=(RankKey(f"{TRIAL_STAGE}-*/val_loss", "best val loss"),),
        result_score="best_value",
        columns=_tune_columns,
    )
)
register(
    JobKind(
        name="finetune",
        params=FinetuneConfig,
        plan=lambda config: {"finetune": config.epochs},
        parents=_finetune_parents,
        ranking=(
            RankKey("finetune/val_accuracy", "val acc"),
            RankKey("finetune/val_loss", "val loss"),
        ),
        columns=_finetune_columns,
        keeps=_finetune_keeps,
    )
)
