"""How long a run should take: the images it will train, at the images/s its model trains.

A run's images come from its kind (jobspec.kinds: its plan of epochs per stage, its split
and batch sizes) and its data set: the training images less the validation share (rounded
up as sklearn's split does), capped as a quick run asks. One epoch then takes

    train images / rate + validation images / (VALIDATION_SPEEDUP x rate)

seconds, where `rate` is the median `images_per_sec` that runs of the same kind and model
logged per epoch (any status: a run still training counts), on the online workers' devices
when any was measured there. A run's first epoch traces and compiles the model, so it is
left out when the run has later ones. Nothing measured yet: the rates the kind declares
(`default_rates`, by the model its `rate_model` names). A running run's
own epochs refine its remaining time: their rate over the measured (or default) one scales
every stage still to come.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from jobspec import kinds
from store.datasets.models import DatasetRecord
from store.runs.models import Metric, MetricSummary, Run

RATE_KEY = "%/images_per_sec"
RECENT_RUNS = 30  # runs whose epochs count, newest first
RECENT_WALK = 1000  # newest runs looked at for rates (never the whole store)
VALIDATION_SPEEDUP = 3.0  # a validation batch (forward only) vs a training step


@dataclass(frozen=True)
class StagePlan:
    """One stage of a run: its epochs and the images of one epoch."""

    stage: str
    model: str  # what the rate is measured per: the AE stage, or the classifier's encoder
    epochs: int
    train_images: int
    val_images: int

    def epoch_seconds(self, rate: float) -> float:
        return self.train_images / rate + self.val_images / (VALIDATION_SPEEDUP * rate)


def plan_of(kind: str, params: dict, n_train: int) -> list[StagePlan]:
    """The run's stages with their images ([] when its params no longer validate)."""
    job = kinds.find(kind)
    config = job.config(params) if job else None
    if job is None or config is None:
        return []
    out = []
    for stage, epochs in job.plan(config).items():
        train, val = job.stage_images(config, stage, n_train)
        out.append(StagePlan(stage, job.rate_model(config, stage), int(epochs), train, val))
    return out


def measured_rates(session: Session, devices: set[str]) -> dict[tuple[str, str, str], float]:
    """{(kind, model, stage family): median images/s} over recent runs' epochs (among the
    newest RECENT_WALK runs), from the given devices when any was measured there (else
    from every device)."""
    # Newest first, each run asked by its id in the summaries' primary key (one row per key
    # of a run), so the cost is the runs walked, never the store's metric rows.
    measured = exists(
        select(1).where(MetricSummary.run_id == Run.id, MetricSummary.key.like(RATE_KEY))
    )
    newest = select(Run.id).order_by(Run.id.desc()).limit(RECENT_WALK).subquery()
    recent = session.execute(
        select(Run.id, Run.kind, Run.params, Run.device)
        .join(newest, newest.c.id == Run.id)
        .where(measured)
        .order_by(Run.id.desc())
        .limit(RECENT_RUNS)
    ).all()
    if not recent:
        return {}
    runs = {row.id: row for row in recent}
    rows = session.execute(
        select(Metric.run_id, Metric.key, Metric.step, Metric.value).where(
            Metric.run_id.in_(runs), Metric.key.like(RATE_KEY)
        )
    ).all()
    samples: dict[tuple, dict[bool, list[float]]] = {}
    for run_id, stage, values in _warm_epochs(rows):
        run = runs[run_id]
        model = _measured_model(run.kind, run.params, stage)
        if model is None:
            continue
        key = (run.kind, model, _family(stage))
        samples.setdefault(key, {True: [], False: []})[run.device in devices] += values
    return {
        key: statistics.median(found[True] or found[False])
        for key, found in samples.items()
        if found[True] or found[False]
    }


def _warm_epochs(rows) -> list[tuple[int, str, list[float]]]:
    """(run, stage, images/s of its epochs), a stage's first epoch left out when it has more."""
    by_stage: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for run_id, key, step, value in rows:
        if value and value > 0:
            by_stage.setdefault((run_id, key.rsplit("/", 1)[0]), []).append((step, value))
    out = []
    for (run_id, stage), points in by_stage.items():
        points.sort()
        kept = points[1:] if len(points) > 1 else points
        out.append((run_id, stage, [value for _, value in kept]))
    return out


def _measured_model(kind: str, params: dict, stage: str) -> str | None:
    job = kinds.find(kind)
    config = job.config(params) if job else None
    if job is None or config is None:
        return None
    return job.rate_model(config, _family(stage))


def _family(stage: str) -> str:
    """trial-3 -> trial: a tune's trials are one stage of its plan."""
    return kinds.TRIAL_STAGE if stage.startswith(f"{kinds.TRIAL_STAGE}-") else stage


def rate_for(kind: str, plan: StagePlan, rates: dict) -> tuple[float, str]:
    """The images/s a stage should train at, and where that figure comes from."""
    measured = rates.get((kind, plan.model, plan.stage))
    if measured:
        return measured, "measured"
    job = kinds.find(kind)
    return (job.default_rate(plan.model) if job else kinds.FALLBACK_RATE), "default"


def estimate(kind: str, plan: list[StagePlan], rates: dict) -> tuple[float | None, str | None]:
    """Seconds the whole run should take, and "measured" or "default" (None: no plan)."""
    if not plan:
        return None, None
    total, sources = 0.0, set()
    for stage in plan:
        rate, source = rate_for(kind, stage, rates)
        total += stage.epochs * stage.epoch_seconds(rate)
        sources.add(source)
    return total, "default" if "default" in sources else "measured"


def remaining(
    kind: str, plan: list[StagePlan], rates: dict, progress: dict, own_rate: float | None
) -> float | None:
    """Seconds a running run still needs: the rest of its current stage and the stages
    after it, at the measured rates scaled by its own epochs' rate when it has any."""
    stages = [s.stage for s in plan]
    current = _family(str(progress.get("stage") or ""))
    if current not in stages:
        return None
    index = stages.index(current)
    base, _ = rate_for(kind, plan[index], rates)
    speed = own_rate / base if own_rate else 1.0
    stage = plan[index]
    left = max(stage.epochs - _epochs_done(progress), 0.0) * stage.epoch_seconds(base * speed)
    for later in plan[index + 1 :]:
        rate, _ = rate_for(kind, later, rates)
        left += later.epochs * later.epoch_seconds(rate * speed)
    return left


def _epochs_done(progress: dict) -> float:
    """Epochs of the current stage behind the run (a tune's: of all its trials so far)."""
    steps = max(int(progress.get("steps") or 1), 1)
    done = int(progress.get("epoch") or 1) - 1 + int(progress.get("step") or 0) / steps
    stage = str(progress.get("stage") or "")
    trial = stage.removeprefix(f"{kinds.TRIAL_STAGE}-")
    if trial != stage and trial.isdigit():  # trials are numbered from 0, each `epochs` long
        done += int(trial) * max(int(progress.get("epochs") or 1), 1)
    return done


def own_rate(session: Session, run_id: int, stage: str) -> float | None:
    """The median images/s of a run's own finished epochs of a stage (family)."""
    rows = session.execute(
        select(Metric.run_id, Metric.key, Metric.step, Metric.value).where(
            Metric.run_id == run_id, Metric.key.like(RATE_KEY)
        )
    ).all()
    values = [v for _, s, vs in _warm_epochs(rows) if _family(s) == _family(stage) for v in vs]
    return statistics.median(values) if values else None


class Timing:
    """Estimates for the runs of one queue panel: rates and data set sizes read once."""

    def __init__(self, session: Session, devices: set[str], runs: list[Run]):
        self.session = session
        self.rates = measured_rates(session, devices)
        ids = {run.dataset_id for run in runs}
        self.sizes = (
            dict(
                session.execute(
                    select(DatasetRecord.id, DatasetRecord.n_train).where(DatasetRecord.id.in_(ids))
                ).all()
            )
            if ids
            else {}
        )

    def plan(self, run: Run) -> list[StagePlan]:
        n_train = self.sizes.get(run.dataset_id)
        return plan_of(run.kind, run.params, n_train) if n_train else []

    def estimate(self, run: Run) -> tuple[float | None, str | None]:
        """A queued run's length and its source (None, None: unknown)."""
        return estimate(run.kind, self.plan(run), self.rates)

    def remaining(self, run: Run, elapsed: float) -> tuple[float | None, str | None]:
        """A running run's time left and its source ("own epochs" once it has some)."""
        plan, progress = self.plan(run), run.progress or {}
        if progress.get("stage") and plan:
            own = own_rate(self.session, run.id, str(progress["stage"]))
            left = remaining(run.kind, plan, self.rates, progress, own)
            if left is not None:
                return left, "own epochs" if own else estimate(run.kind, plan, self.rates)[1]
        total, source = estimate(run.kind, plan, self.rates)  # no batch reported yet
        return (None, None) if total is None else (max(total - elapsed, 0.0), source)
