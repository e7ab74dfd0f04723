"""The registry of job kinds: everything the web, the store and the worker need to know
about a kind, declared once, typed by the kind's parameter model.

A `JobKind[P]` is one declaration: its parameter model `P` and, as functions of a
validated `P`, its stage/epoch plan, the parent stages it needs, its split and batches
(ETAs), the model a rate is measured per, its batch memory; as data, its ranking, its
limits, what the pages show for it (`Features`) and its worker entry point (a dotted
"module:function" the worker imports when a run of the kind starts; it returns a
`jobspec.outcome.JobOutcome`). Other layers ask the kind; none reads an attribute its
params may lack or compares a kind's name.

The built-in kinds are declared in `jobspec/builtin_kinds.py`, the value types a kind
declares (RankKey, Keep, SplitPlan, Features) in `jobspec/kind_fields.py`. Plug-ins: the
modules named in `STACKLAB_KIND_MODULES` (comma-separated) and the entry points of the
`stacklab.kinds` group are imported when the registry is first read, in every process
(web, worker, command line), and call `register(...)`. Pure: pydantic and the stdlib.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from inspect import cleandoc
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from jobspec.kind_fields import Features, Keep, RankKey, SplitPlan
from jobspec.kind_names import TASK_PREFIX, refusal
from jobspec.stages import STAGES, TRIAL_STAGE

__all__ = [
    "STAGES",
    "TRIAL_STAGE",
    "Features",
    "JobKind",
    "Keep",
    "RankKey",
    "SplitPlan",
    "get",
    "names",
    "register",
    "registered",
]

P = TypeVar("P", bound=BaseModel)

PLUGIN_ENV = "STACKLAB_KIND_MODULES"  # comma-separated modules that register kinds
PLUGIN_GROUP = "stacklab.kinds"  # Python entry points whose load() registers kinds
FALLBACK_RATE = 100.0  # images/s of a model nothing was measured for nor declared
DEFAULT_BATCH = 128


def _no_keep(config: BaseModel) -> Keep | None:
    return None


def _no_parents(config: BaseModel) -> tuple[str, ...]:
    return ()


def _no_plan(config: BaseModel) -> dict[str, int]:
    return {}


def _no_columns(params: dict[str, Any]) -> list[list[str]]:
    return []


def _no_split(config: BaseModel) -> SplitPlan:
    return SplitPlan()


def _default_batch(config: BaseModel, stage: str) -> int:
    return DEFAULT_BATCH


def _stage_is_model(config: BaseModel, stage: str) -> str:
    return stage


def _no_memory(config: BaseModel) -> float:
    return 0.0


def _provides_nothing(result: Mapping[str, Any]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class JobKind(Generic[P]):
    """One kind of job. Every function takes the validated config `P` (columns: the
    stored params, which may predate the model); every field has a safe default except
    the name, the model and the worker entry point."""

    name: str
    params: type[P]
    entry: str  # "package.module:function": (config: P, context) -> JobOutcome, in the worker
    plan: Callable[[P], dict[str, int]] = _no_plan  # stage -> epochs it trains
    parents: Callable[[P], tuple[str, ...]] = _no_parents  # stages it loads from its parent
    ranking: tuple[RankKey, ...] = ()
    # A field of the run's result that, when set, is its score (a tune's best trial value).
    result_score: str | None = None
    columns: Callable[[dict[str, Any]], list[list[str]]] = _no_columns
    title: str = ""  # default: the name, capitalised
    keeps: Callable[[P], Keep | None] = _no_keep
    split: Callable[[P], SplitPlan] = _no_split  # its validation share and quick-run caps
    batch_size: Callable[[P, str], int] = _default_batch  # of a stage of its plan
    rate_model: Callable[[P, str], str] = _stage_is_model  # what images/s are measured per
    default_rates: Mapping[str, float] = field(default_factory=dict)  # model -> images/s
    batch_memory_mb: Callable[[P], float] = _no_memory  # 0: no memory check
    trials_field: str | None = None  # a params field that multiplies its work (max_trials)
    features: Features = Features()
    # stage -> the name its weights files start with, where that is not the stage's name
    file_prefixes: Mapping[str, str] = field(default_factory=dict)
    # As a parent (features.experiment_root: both required): the stages a finished run of
    # it provides, read from its stored result, and the files a child's worker fetches.
    provides: Callable[[Mapping[str, Any]], tuple[str, ...]] = _provides_nothing
    parent_files: tuple[str, ...] = ()

    def config(self, params: Mapping[str, Any] | None) -> P | None:
        """The validated config of stored params; None when they no longer validate."""
        try:
            return self.params(**(params or {}))
        except ValidationError:
            return None

    def kept_epoch_rule(self, params: Mapping[str, Any] | None) -> Keep | None:
        """The Keep of a run's stored params (None: every stage keeps its last epoch)."""
        config = self.config(params)
        return None if config is None else self.keeps(config)

    def stage_plan(self, params: Mapping[str, Any] | None) -> dict[str, int]:
        """Stage -> epochs the job trains, defaults filled in; {} when params do not validate
        (a run stored under older rules has no plan rather than a wrong one)."""
        config = self.config(params)
        return {} if config is None else self.plan(config)

    def epochs_of(self, params: Mapping[str, Any] | None, stage: str) -> int | None:
        """The epochs a stored stage was planned to train: its plan's, or for one trial
        ("trial-3") of a plan in trials, the trials' share (None: not in the plan)."""
        config = self.config(params)
        if config is None:
            return None
        plan, trials = self.plan(config), self.trials(config)
        if stage in plan:
            return plan[stage]
        if stage.startswith(f"{TRIAL_STAGE}-") and TRIAL_STAGE in plan and trials:
            return plan[TRIAL_STAGE] // trials
        return None

    def evaluated_stage(self, params: Mapping[str, Any] | None) -> str | None:
        """The stage whose model an evaluated kind (`features.evaluation`) keeps and scores:
        its Keep's, else its plan's last (None: not evaluated, or params do not validate)."""
        config = self.config(params)
        if config is None or not self.features.evaluation:
            return None
        keep = self.keeps(config)
        return keep.stage if keep is not None else next(reversed(self.plan(config)), None)

    def file_prefix(self, stage: str) -> str:
        """What the names of a stage's weights files start with."""
        return self.file_prefixes.get(stage, stage)

    def total_epochs(self, config: P) -> int:
        """Epochs the job may train at most: its plan summed (a tune: trials x epochs)."""
        return sum(self.plan(config).values())

    def stage_images(self, config: P, stage: str, n_train: int) -> tuple[int, int]:
        """(training, validation) images one epoch of a stage sees."""
        return self.split(config).images(n_train, self.batch_size(config, stage))

    def default_rate(self, model: str) -> float:
        """The images/s a model is assumed to train at before one is measured."""
        return self.default_rates.get(model, FALLBACK_RATE)

    def trials(self, config: P) -> int | None:
        """The value of its trials field (None: the kind has none)."""
        if self.trials_field is None:
            return None
        value = getattr(config, self.trials_field)  # None: the kind's "no set number"
        return None if value is None else int(value)

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


_REGISTRY: dict[str, JobKind[Any]] = {}
_LOADED = False


def _builtins() -> None:
    """The built-in kinds come first, whichever module registers first (a no-op while
    jobspec.builtin_kinds itself is being imported)."""
    importlib.import_module("jobspec.builtin_kinds")


def _load() -> None:
    """Import the built-in kinds, then the plug-ins, once per process: at the registry's
    first read, so a plug-in module may import anything the registry's readers do."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True  # first: the modules imported below call register()
    _builtins()
    for module in os.environ.get(PLUGIN_ENV, "").split(","):
        if module.strip():
            importlib.import_module(module.strip())
    for point in entry_points(group=PLUGIN_GROUP):
        point.load()


def register(kind: JobKind[P]) -> JobKind[P]:
    """Add a kind (at import time of its module; tests use `registered`). Its name must
    be a short lowercase identifier outside `jobspec.kind_names.RESERVED`."""
    _builtins()
    if (why := refusal(kind.name)) is not None:
        raise ValueError(why)
    if kind.features.experiment_root and (
        kind.provides is _provides_nothing or not kind.parent_files
    ):
        raise ValueError(f"{kind.name}: a parent kind declares `provides` and `parent_files`")
    if kind.name in _REGISTRY:
        raise ValueError(f"job kind {kind.name!r} is already registered")
    if kind.trials_field is not None and kind.trials_field not in kind.params.model_fields:
        raise ValueError(f"{kind.name}: trials_field {kind.trials_field!r} is not a param")
    if ":" not in kind.entry:
        raise ValueError(f"{kind.name}: entry {kind.entry!r} is not 'module:function'")
    _REGISTRY[kind.name] = kind
    return kind


@contextmanager
def registered(kind: JobKind[P]) -> Iterator[JobKind[P]]:
    """A kind registered for the duration of a block, then removed."""
    register(kind)
    try:
        yield kind
    finally:
        unregister(kind.name)


def unregister(name: str) -> None:
    """Remove a kind (tests; a process's kinds are otherwise fixed once imported)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    """Every kind's name, in registration order."""
    _load()
    return tuple(_REGISTRY)


def get(name: str) -> JobKind[Any]:
    """A kind by name; KeyError names the known ones."""
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown job kind {name!r} (known: {', '.join(_REGISTRY)})") from None


def find(name: str) -> JobKind[Any] | None:
    """A kind by name, None for one this process does not know (a run stored by a plug-in
    no longer installed)."""
    _load()
    return _REGISTRY.get(name)


def features(name: str) -> Features:
    """What the pages show for a kind; all off for an unknown one."""
    kind = find(name)
    return kind.features if kind else Features()


def having(test: Callable[[Features], bool]) -> tuple[str, ...]:
    """Names of the kinds whose features pass `test` (`lambda f: f.experiment_root`)."""
    _load()
    return tuple(n for n, k in _REGISTRY.items() if test(k.features))


def job_params() -> dict[str, type[BaseModel]]:
    """Kind -> parameter model."""
    _load()
    return {name: kind.params for name, kind in _REGISTRY.items()}


def task_names() -> dict[str, str]:
    """Kind -> Celery task name."""
    _load()
    return {name: kind.task for name, kind in _REGISTRY.items()}


def parent_stages(name: str, config: BaseModel) -> tuple[str, ...]:
    """The pretrained stages a job needs from its parent run, in order (none: no parent)."""
    return get(name).parents(config)


def table_columns(name: str, params: dict[str, Any]) -> list[list[str]]:
    """[label, value] pairs of the parameters that tell runs of a kind apart in a list."""
    kind = find(name)
    return kind.columns(params) if kind else []
