"""Run the next stored run: claim what the scheduler says is next for this worker, fetch
its inputs, call the training core (resuming from the run's checkpoint when it has one),
store the outcome.

The broker's message only wakes the worker: store.scheduler decides which run it takes
(priority, fair share, age), among those its lane, GPU and installed kinds allow. Every
store write of the attempt is fenced (store.runs.attempts); the final write (files, result,
status) is retried through store outages for final_write_timeout_seconds. A run set aside
for one of higher priority stops at an epoch boundary and goes back to the queue, keeping
its place and its checkpoint.
"""

from __future__ import annotations

import logging
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from jobspec import kinds
from jobspec.scheduling import Lane
from jobspec.status import AttemptOutcome, RunStatus
from store import queue, scheduler
from store.artifacts import service as artifacts_service
from store.db import is_transient, session_scope
from store.errors import AttemptSuperseded, NotFound
from store.faults import StoreFault, classify, describe
from store.runs import attempts, staging
from store.runs import checkpoints as checkpoints_service
from store.runs import service as runs_service
from store.runs.models import ResumePoint, Run
from store.settings import Settings, get_settings
from worker import device, liveness, system_metrics
from worker.datasets import load_from_store
from worker.recorder import StoreRecorder

log = logging.getLogger(__name__)
NOT_STORED = {"study.db"}
NOTHING = "nothing to do"
HANDED_BACK = "handed back"
T = TypeVar("T")


class ParentUnusable(Exception):
    """The parent run ended without the outputs this run starts from."""


class StoreNotReady(Exception):
    """The store could not be reached to claim a run: the task tries again later."""


class WorkerStopping(Exception):
    """This worker was told to stop: the message goes back to the queue."""


@dataclass(frozen=True)
class RunSpec:
    """What a worker needs to know of a claimed run (no ORM object leaves the session)."""

    id: int
    kind: str
    params: dict
    dataset_id: int
    parent_run_id: int | None
    study_name: str | None
    attempt: int
    resume_from: ResumePoint | None


@lru_cache
def capacity() -> scheduler.Capacity:
    """What this worker may claim: its lane (STACKLAB_WORKER_LANE), its GPU and that GPU's
    memory, and the job kinds installed here. In the pool child (it asks the framework)."""
    installed = frozenset(kinds.names())
    if device.lane() is not Lane.TRAINING:
        return scheduler.Capacity(device.lane(), kinds=installed)
    gpu = device.has_gpu()
    memory = device.gpu_memory_mb() if gpu else None
    return scheduler.Capacity(Lane.TRAINING, gpu=gpu, gpu_memory_mb=memory, kinds=installed)


def execute(hint: int) -> str:
    """Woken by a message (`hint`: the run it was sent for, for the logs): claim the next
    run the scheduler gives this worker and run it; returns how the attempt ended, or
    NOTHING when there was nothing this worker may take."""
    if liveness.DRAINING.is_set():
        liveness.refuse_new_work()
        raise WorkerStopping(f"not taking work (woken for run {hint}): this worker is stopping")
    mine = capacity()
    if mine.lane is not Lane.TRAINING:  # an old run message on a CPU-lane worker
        log.info("woken for run %s on the %s: it trains nothing", hint, mine.lane.label)
        return NOTHING
    try:
        claimed = _claim(mine)
    except Exception as err:
        if classify(err) is not None:  # unreachable, or it cannot write: runs stay queued
            raise StoreNotReady(describe(err)) from err
        raise
    if claimed is None:
        log.info("woken for run %s: nothing queued for this worker", hint)
        return NOTHING
    spec, checkpoint = claimed
    log.info(
        "run %s: attempt %s (woken for run %s)%s",
        spec.id,
        spec.attempt,
        hint,
        f", resuming after {spec.resume_from}" if spec.resume_from else "",
    )
    recorder = StoreRecorder(
        spec.id,
        spec.attempt,
        settings=get_settings(),
        worker=device.worker_name(),
        device=device.describe(),
        stage_plan=_stage_plan(spec),
        draining=liveness.DRAINING,
        lane=mine.lane,
        gpu_memory_mb=mine.gpu_memory_mb,
    )
    liveness.current_run = spec.id
    said: str | None = None
    try:
        with liveness.hand_back_on_sigterm(), recorder:
            said = _run_claimed(spec, checkpoint, recorder)
        return said
    finally:
        liveness.current_run = None
        if said != HANDED_BACK:  # a hand-back sent its own wake
            wake_next(mine)


def wake_next(capacity: scheduler.Capacity) -> None:
    """A run ended here: while something is queued that this worker could take, send one
    wake so a free worker (maybe this one) claims it. A failed send is fine: the upkeep
    re-sends what stays queued."""
    try:
        with session_scope() as session:
            waiting = scheduler.next_for(session, capacity, limit=1)
            kind = session.get_one(Run, waiting[0]).kind if waiting else None
        if not waiting or kind is None:
            return
        task_id = queue.enqueue(kind, waiting[0])
        with session_scope() as session:  # a message naming it went: no re-send needed
            runs_service.mark_sent(session=session, run_id=waiting[0], task_id=task_id)
    except Exception as err:
        log.warning("could not wake a worker for the next run (%s); upkeep will", err)


def _claim(capacity: scheduler.Capacity) -> tuple[RunSpec, bytes | None] | None:
    with session_scope() as session:
        claimed = scheduler.claim_next(
            session,
            capacity,
            worker_host=device.worker_name(),
            device=device.describe(),
            versions=device.versions(),
        )
        if claimed is None:
            return None
        run = runs_service.get_run(session, claimed.run_id)
        claim = claimed.claim
        checkpoint = checkpoints_service.load(session, run.id) if claim.resume_from else None
        spec = RunSpec(
            run.id,
            run.kind,
            dict(run.params),
            run.dataset_id,
            run.parent_run_id,
            run.study_name,
            claim.attempt,
            claim.resume_from,
        )
    return spec, checkpoint


def _run_claimed(spec: RunSpec, checkpoint: bytes | None, recorder: StoreRecorder) -> str:
    settings = get_settings()
    try:
        with tempfile.TemporaryDirectory(prefix=f"stacklab-run{spec.id}-") as tmp:
            with system_metrics.sampling(recorder, settings.system_metrics_seconds):
                status, result, files = _call_job(spec, checkpoint, Path(tmp), recorder, settings)
            return _conclude(spec, recorder, status, result, files)
    except AttemptSuperseded as err:
        log.error(
            "run %s: attempt %s stopped, nothing more written: %s", spec.id, spec.attempt, err
        )
        return "superseded"
    except Exception as err:
        if recorder.stop_reason == "superseded":
            log.error("run %s: attempt %s was superseded (then: %s)", spec.id, spec.attempt, err)
            return "superseded"
        log.exception("run %s failed", spec.id)
        if (fault := classify(err)) is not None and not fault.transient:
            return _record_failure(spec, recorder, _refused(err), store_fault=True)
        if (outage := _outage_behind(err)) is not None:
            # The job's own use of the store (Optuna's study storage) met an outage: not a
            # bug of the run. Another attempt resumes it from its last checkpoint while it
            # has re-tries left; else it fails saying so (never with the error the library
            # let escape).
            reason = f"the store was unreachable mid-job ({describe(outage)})"
            if _has_retries(spec):
                return _hand_back(spec, recorder, reason=reason, costs_retry=True)
            said = f"The store was unreachable mid-job, its last re-try used ({describe(outage)})"
            return _record_failure(spec, recorder, said, store_fault=True)
        return _record_failure(
            spec, recorder, f"{type(err).__name__}: {err}", traceback.format_exc()
        )
    finally:
        # Keras lives in the pool child only (it imported it at start-up); this module is
        # also imported by the Celery main process, which must not load it.
        from worker.ml.training import release_memory

        release_memory()


def _conclude(
    spec: RunSpec,
    recorder: StoreRecorder,
    status: RunStatus,
    result: dict[str, Any],
    files: list[Path],
) -> str:
    """Store what the job produced, according to why it stopped."""
    reason = recorder.stop_reason
    if reason == "superseded":
        log.error(
            "run %s: attempt %s was superseded; its results are dropped", spec.id, spec.attempt
        )
        return "superseded"
    if reason == "store-error":
        err = recorder.store_error
        said = _refused(err) if err is not None else "The store refused a write"
        return _record_failure(spec, recorder, said, store_fault=True)
    if status == RunStatus.CANCELLED and reason != "cancel" and recorder.draining.is_set():
        return _hand_back(spec, recorder)
    if status == RunStatus.CANCELLED and reason is None and recorder.paused is not None:
        return _hand_back(
            spec,
            recorder,
            reason=_set_aside_note(recorder),
            outcome=AttemptOutcome.PREEMPTED,
        )
    pending = recorder.take_pending()
    if status == RunStatus.SUCCEEDED:
        pending.checkpoint = None  # a finished run keeps no resume point: not streamed in
    staged: dict[str, int] = {}  # file name -> its staged copy, kept across retries

    def final_write() -> None:
        # The bytes first, streamed in staged a chunk per transaction while the link goes
        # on beating; then one short transaction publishes it all, the run's row last.
        for path in files:
            if path.exists() and path.name not in NOT_STORED and path.name not in staged:
                staged[path.name] = staging.stage_file(
                    scope=session_scope, run_id=spec.id, attempt=spec.attempt, path=path
                )
        pending.stage(session_scope, spec.id, spec.attempt)
        with session_scope() as session:
            attempts.guard(session)
            pending.publish(session, spec.id, spec.attempt)
            for staged_id in staged.values():  # after the link's files: the job's last word
                staging.publish(session, run_id=spec.id, attempt=spec.attempt, staged_id=staged_id)
            artifacts_service.drop_run_files_except(
                session, spec.id, set(staged) | {checkpoints_service.NAME}
            )
            if status == RunStatus.SUCCEEDED:
                checkpoints_service.discard(session, spec.id)
            attempts.finish(
                session=session, run_id=spec.id, attempt=spec.attempt, status=status, result=result
            )

    _retrying(final_write, what=f"run {spec.id}'s final write")
    return status


def _set_aside_note(recorder: StoreRecorder) -> str:
    """e.g. "set aside for run #12 (priority 10) at ae02 epoch 4"."""
    paused, where = recorder.paused, recorder.last_checkpoint
    assert paused is not None
    said = f"set aside for run #{paused.for_run_id} (priority {paused.for_priority})"
    return f"{said} at {where[0]} epoch {where[1]}" if where else said


def _hand_back(
    spec: RunSpec,
    recorder: StoreRecorder,
    *,
    reason: str = "its worker was told to stop",
    costs_retry: bool = False,
    outcome: AttemptOutcome = AttemptOutcome.INTERRUPTED,
) -> str:
    """The worker is stopping (or the job met a store outage, or it was set aside for a run
    of higher priority: outcome PREEMPTED, the run keeps its place): keep the last
    checkpoint, put the run back in the queue and wake a worker (or, with a cancel pending,
    end it cancelled: nothing is sent). costs_retry: the hand-back uses one of the run's
    automatic re-tries."""
    if outcome is AttemptOutcome.INTERRUPTED:
        reason = f"{reason}; resumes from the last checkpoint"
    ended: list[RunStatus] = []
    _close_attempt(
        spec,
        recorder,
        lambda session: ended.append(
            attempts.hand_back(
                session=session,
                run_id=spec.id,
                attempt=spec.attempt,
                reason=reason,
                costs_retry=costs_retry,
                outcome=outcome,
            ).status
        ),
        what=f"handing run {spec.id} back",
    )
    if ended[-1] == RunStatus.CANCELLED:
        log.warning("run %s: cancelled while being handed back; not re-queued", spec.id)
        return RunStatus.CANCELLED
    try:
        task_id = queue.enqueue(spec.kind, spec.id)
        with session_scope() as session:
            runs_service.mark_sent(session=session, run_id=spec.id, task_id=task_id)
    except Exception as err:  # the upkeep of any process re-sends it
        log.warning("run %s handed back but not re-sent (%s); upkeep will send it", spec.id, err)
    log.warning("run %s: handed back to the queue (%s)", spec.id, reason)
    return HANDED_BACK


def _refused(err: BaseException) -> str:
    """A refused write, said for the run's error."""
    return f"The store refused a write: {describe(err)}"


def _outage_behind(err: BaseException) -> BaseException | None:
    """A passing store outage anywhere behind err (raised from it, or raised while it was
    being handled: Optuna's trial bookkeeping lets an UnboundLocalError hide the
    OperationalError of its storage), or None."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [err]
    while todo and len(seen) < 8:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        if (fault := classify(item)) is not None:
            return item if fault.transient else None
        todo += [item.__cause__, item.__context__]
    return None


def _has_retries(spec: RunSpec) -> bool:
    """Whether the run has an automatic re-try left (False when the store cannot say)."""
    try:
        with session_scope() as session:
            return runs_service.get_run(session, spec.id).retries_left > 0
    except Exception:
        return False


def _record_failure(
    spec: RunSpec,
    recorder: StoreRecorder,
    error: str,
    trace: str | None = None,
    *,
    store_fault: bool = False,
) -> str:
    """End the attempt failed, saying why. When the store cannot take what the job still
    had unwritten (a full disk, a read-only store), the failure record goes alone: it is
    tiny, and is retried until it lands or the final-write timeout passes. Meanwhile the
    upkeep's write probe fails too, so nobody gives the run up for dead."""

    def close(session: Session, said: str) -> None:
        attempts.finish(
            session=session,
            run_id=spec.id,
            attempt=spec.attempt,
            status=RunStatus.FAILED,
            error=_with_resume_point(session, spec.id, said) if store_fault else said,
            traceback=trace,
        )

    what = f"recording run {spec.id}'s failure"
    try:
        try:
            _close_attempt(spec, recorder, lambda session: close(session, error), what=what)
        except AttemptSuperseded:
            raise
        except Exception as err:
            fault = classify(err)
            if fault is None or fault.transient:
                raise
            if not store_fault:
                error = f"{error} (its last results were not stored: {describe(err)})"
                store_fault = True
            said = error
            _record_alone(spec, lambda session: close(session, said), fault, what=what)
    except AttemptSuperseded as err:
        log.error("run %s: failure not recorded, attempt superseded: %s", spec.id, err)
        return "superseded"
    except Exception as err:
        if classify(err) is None:
            raise
        log.error("run %s: failure never recorded, the store kept refusing: %s", spec.id, err)
        return "failure not recorded"
    return RunStatus.FAILED


def _record_alone(
    spec: RunSpec, close: Callable[[Session], None], fault: StoreFault, *, what: str
) -> None:
    """The failure record without the job's unwritten data, retried through any store fault."""
    log.error("run %s: %s; recording the failure alone", spec.id, fault.reason)

    def write() -> None:
        with session_scope() as session:
            attempts.guard(session)
            close(session)

    # Short waits: once writes come back the record lands well inside the stale window the
    # reapers wait after their own write probe succeeds again.
    pace = max(0.05, min(15.0, get_settings().stale_after_seconds / 4))
    _retrying(write, what=what, through=lambda err: classify(err) is not None, max_delay=pace)


def _with_resume_point(session: Session, run_id: int, error: str) -> str:
    """The error, and where a re-queue resumes (what was trained before the fault is kept)."""
    point = runs_service.get_run(session, run_id).checkpoint
    if point:
        return (
            f"{error}. Its last checkpoint ({point['stage']} epoch {point['epoch']}) is kept: "
            f"re-queue to resume from epoch {point['epoch']}."
        )
    return f"{error}. Nothing was checkpointed yet: re-queue to start again."


def _close_attempt(
    spec: RunSpec, recorder: StoreRecorder, close: Callable[[Session], object], *, what: str
) -> None:
    """What the job still had unwritten (its bytes streamed in staged first), then
    close(session) ends the attempt: one short fenced transaction, retried through store
    outages."""
    pending = recorder.take_pending()

    def write() -> None:
        pending.stage(session_scope, spec.id, spec.attempt)
        with session_scope() as session:
            attempts.guard(session)
            pending.publish(session, spec.id, spec.attempt)
            close(session)

    _retrying(write, what=what)


def _retrying(
    fn: Callable[[], T],
    *,
    what: str,
    timeout: float | None = None,
    through: Callable[[BaseException], bool] = is_transient,
    max_delay: float = 15.0,
) -> T:
    """fn(), retried with backoff (at most max_delay apart) while `through(err)` (the store
    is unreachable), up to the final-write timeout; a refused (superseded) attempt or any
    other error is raised at once."""
    timeout = get_settings().final_write_timeout_seconds if timeout is None else timeout
    deadline, delay, first = time.monotonic() + timeout, min(0.5, max_delay), None
    while True:
        try:
            result = fn()
            if first is not None:
                log.warning(
                    "%s landed after %.0f s of store trouble", what, time.monotonic() - first
                )
            return result
        except AttemptSuperseded:
            raise
        except Exception as err:
            if not through(err) or time.monotonic() + delay > deadline:
                raise
            if first is None:
                first = time.monotonic()
                log.warning("%s: %s; retrying for %.0f s", what, describe(err), timeout)
            time.sleep(delay)
            delay = min(delay * 2, max_delay)


# The same retry loop for the worker's other tasks' writes ("evaluate now").
retrying = _retrying


def _stage_plan(spec: RunSpec) -> dict[str, int]:
    """Stage -> epochs from the job registry, for an ETA across stages (a one-stage job's
    own progress carries its ETA)."""
    plan = kinds.get(spec.kind).stage_plan(spec.params) if spec.kind in kinds.names() else {}
    return plan if len(plan) > 1 else {}


def _fetch_parent(parent_run_id: int, cache_dir: Path) -> Path:
    """The files the parent's kind gives its children (`parent_files`: a pretrain's
    manifest and weights), in the local cache."""
    target = cache_dir / "runs" / str(parent_run_id)
    with session_scope() as session:
        parent = runs_service.get_run(session, parent_run_id)
        if parent.status == RunStatus.FAILED:  # it stored no outputs: say so, not "no file"
            raise ParentUnusable(
                f"its parent {parent.kind} run {parent.id} failed, so there is nothing to "
                "start from: re-queue the parent, and this run once the parent has succeeded"
            )
        job = kinds.find(parent.kind)
        found = 0
        for name in job.parent_files if job else ():
            if (target / name).exists():
                found += 1
                continue
            try:
                artifact = artifacts_service.run_artifact(session, parent_run_id, name)
            except NotFound:
                continue  # a stage the parent did not train; the job says so if it needs it
            artifacts_service.write_to(session, artifact, target / name)
            found += 1
        if parent.status == RunStatus.CANCELLED and not found:  # cancelled before any output
            raise ParentUnusable(
                f"its parent {parent.kind} run {parent.id} was cancelled before it stored "
                "anything to start from: re-queue the parent, and this run once the parent "
                "has succeeded"
            )
    return target


def _call_job(
    spec: RunSpec,
    checkpoint: bytes | None,
    out_dir: Path,
    recorder: StoreRecorder,
    settings: Settings,
) -> tuple[RunStatus, dict[str, Any], list[Path]]:
    # Deferred like release_memory above: both import Keras.
    from worker import jobs
    from worker.ml.checkpoint import Checkpoint

    dataset = _retrying(
        lambda: load_from_store(spec.dataset_id, settings.cache_dir), what="loading the data set"
    )
    parent_dir = (
        _retrying(
            lambda: _fetch_parent(parent_id, settings.cache_dir),
            what="fetching the parent's weights",
        )
        if (parent_id := spec.parent_run_id)
        else None
    )
    return jobs.run(
        spec.kind,
        spec.params,
        dataset=dataset,
        out_dir=out_dir,
        recorder=recorder,
        parent_dir=parent_dir,
        study_name=spec.study_name,
        storage_url=settings.sqlalchemy_url,
        resume=Checkpoint.from_bytes(checkpoint) if checkpoint else None,
    )
