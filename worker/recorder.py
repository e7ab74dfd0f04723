"""The run's link to the store while it trains: the training thread never waits for it.

The job reports into memory (progress, epoch metrics, system samples, checkpoints,
trials); two background threads take it from there. The beat thread says the attempt is
alive (with its progress) every beat, in a tiny fenced transaction of its own, for the
whole job, exports and uploads included. The flush thread writes the data: big bytes
(checkpoints, files) streamed in staged, a chunk per transaction (store.runs.staging),
then one short fenced transaction that publishes them with the epoch's rows. Neither waits
for the other, so a write of any size or duration never delays a beat: a slow store slows
the data, not liveness.

A store outage only delays the writes: they stay buffered and are retried with backoff while
training goes on. A refused write or beat (another attempt owns the run now) stops the job
at its next batch. Samples are time series (store.runs.samples), never written as epochs.
Each beat also reads whether the scheduler asked the run to step aside for a run of higher
priority (store.scheduler.set_aside_request): the job then pauses after its next
checkpoint (`should_pause`), and the runner hands the run back to the queue.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from jobspec.scheduling import Lane
from store import scheduler
from store.artifacts import service as artifacts_service
from store.db import is_transient, session_scope
from store.errors import AttemptSuperseded
from store.runs import attempts, staging
from store.runs import checkpoints as checkpoints_service
from store.runs import metrics as metrics_service
from store.runs import samples as samples_service
from store.settings import Settings
from store.workers import service as workers_service
from worker.ml.reporting import Progress, Reporter, TrialReport

if TYPE_CHECKING:  # its module loads NumPy: the link itself never needs it
    from worker.ml.checkpoint import Checkpoint

log = logging.getLogger(__name__)
MAX_BACKOFF = 15.0
# System samples kept while the store is unreachable (at 5 s a sample: hours); the oldest
# go first, as they matter least and epochs never queue behind them.
MAX_BUFFERED_SAMPLES = 2000


@dataclass
class Pending:
    """What the job reported that is not in the store yet."""

    epochs: list[tuple[str, int, dict]] = field(default_factory=list)
    samples: list[samples_service.Reading] = field(default_factory=list)  # (t, wall, values)
    trials: list[dict] = field(default_factory=list)
    checkpoint: Checkpoint | None = None  # the latest only
    files: dict[str, bytes] = field(default_factory=dict)  # made mid-run: the latest by name
    # file name -> its staged copy, streamed in whole and not yet published (this attempt)
    staged: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.epochs or self.samples or self.trials or self.files or self.checkpoint is not None
        )

    def write(self, session: Session, run_id: int, attempt: int) -> None:
        """Everything pending in the caller's (fenced) transaction, bytes included: for
        small writes (the link streams its bytes: stage, then publish)."""
        self._write_rows(session, run_id, attempt)
        for name, data in self.files.items():
            artifacts_service.store_bytes(
                session=session,
                data=data,
                name=name,
                kind=artifacts_service.kind_of(name),
                run_id=run_id,
            )
        if self.checkpoint is not None:
            ckpt = self.checkpoint
            checkpoints_service.save(
                session=session,
                run_id=run_id,
                attempt=attempt,
                data=ckpt.to_bytes(),
                stage=ckpt.stage,
                epoch=ckpt.epoch,
            )

    def _write_rows(self, session: Session, run_id: int, attempt: int) -> None:
        for stage, epoch, values in self.epochs:
            metrics_service.log_epoch(
                session=session, run_id=run_id, stage=stage, step=epoch, values=values
            )
        samples_service.record(
            session=session, run_id=run_id, attempt=attempt, readings=self.samples
        )
        for trial in self.trials:
            metrics_service.record_trial(session=session, run_id=run_id, trial=trial)

    def stage(self, scope: staging.Scope, run_id: int, attempt: int) -> None:
        """Stream the files and the checkpoint in, staged, a chunk per transaction (what
        was staged whole already, by an earlier try, is not streamed again)."""
        for name, data in self.files.items():
            if name not in self.staged:
                self.staged[name] = staging.stage_bytes(
                    scope=scope, run_id=run_id, attempt=attempt, name=name, data=data
                )
        ckpt, name = self.checkpoint, checkpoints_service.NAME
        if ckpt is not None and name not in self.staged:
            self.staged[name] = staging.stage_bytes(
                scope=scope,
                run_id=run_id,
                attempt=attempt,
                name=name,
                data=ckpt.to_bytes(),
                kind=checkpoints_service.KIND,
            )

    def publish(self, session: Session, run_id: int, attempt: int) -> None:
        """The rows, and the staged bytes put in place, in the caller's transaction (which
        fences the attempt last, so the run's row is locked only for its last moment)."""
        self._write_rows(session, run_id, attempt)
        for name in self.files:
            staging.publish(session, run_id=run_id, attempt=attempt, staged_id=self.staged[name])
        if self.checkpoint is not None:
            checkpoints_service.publish(
                session=session,
                run_id=run_id,
                attempt=attempt,
                staged_id=self.staged[checkpoints_service.NAME],
                stage=self.checkpoint.stage,
                epoch=self.checkpoint.epoch,
            )

    def merge_back(self, newer: Pending) -> None:
        """Put a failed write's data back in front of what arrived since (a file or a
        checkpoint newer than the one staged is streamed again)."""
        self.epochs += newer.epochs
        self.samples = (self.samples + newer.samples)[-MAX_BUFFERED_SAMPLES:]
        self.trials += newer.trials
        self.files = {**self.files, **newer.files}
        for name in newer.files:
            self.staged.pop(name, None)
        if newer.checkpoint is not None:
            self.checkpoint = newer.checkpoint
            self.staged.pop(checkpoints_service.NAME, None)


class StoreRecorder(Reporter):
    """A Reporter for one attempt of one run; use as a context manager around the job."""

    def __init__(
        self,
        run_id: int,
        attempt: int,
        *,
        settings: Settings,
        worker: str = "",
        device: str = "",
        stage_plan: dict[str, int] | None = None,
        draining: threading.Event | None = None,
        lane: Lane = Lane.TRAINING,
        gpu_memory_mb: int | None = None,
    ) -> None:
        self.run_id, self.attempt = run_id, attempt
        self.settings, self.worker, self.device = settings, worker, device
        self.lane, self.gpu_memory_mb = lane, gpu_memory_mb
        self.stage_plan = stage_plan or {}  # stage -> epochs, for an ETA across stages
        self.draining = draining or threading.Event()
        self.stages: dict[str, dict] = {}
        self.stop_reason: str | None = None  # cancel | superseded | store-error
        self.store_error: BaseException | None = None
        # What the last beat read: the run is asked to step aside (None: it is not).
        self.set_aside: scheduler.SetAside | None = None
        # The request the job honoured when it paused (None: it did not pause).
        self.paused: scheduler.SetAside | None = None
        self.last_checkpoint: tuple[str, int] | None = None  # (stage, epoch) handed over
        self.write_lock = threading.Lock()
        # Held across a whole flush (take, write, commit or merge back): the final write's
        # take_pending waits for a flush in flight, or both would store the same file.
        self._flush_lock = threading.Lock()
        self._pending = Pending()
        self._progress: dict | None = None
        self._images = 0
        self._reported = 0.0
        self._concluding = False
        self._wake = threading.Event()
        self._done = threading.Event()
        self._threads = [
            threading.Thread(target=self._flush_loop, name=f"run-{run_id}-flush", daemon=True),
            threading.Thread(target=self._beat_loop, name=f"run-{run_id}-beat", daemon=True),
        ]

    # --- the training thread's side: memory only ---

    def wants_checkpoints(self) -> bool:
        return True

    def stage_started(self, stage: str, *, epochs: int, steps: int, images: int) -> None:
        self._images = images

    def batch_ended(self, progress: Progress) -> None:
        data = asdict(progress)
        data["eta_seconds"] = progress.eta_seconds + self._later_stages_seconds(progress)
        plan = list(self.stage_plan)
        if progress.stage in plan:
            data["stage_index"], data["stage_count"] = plan.index(progress.stage) + 1, len(plan)
        elif plan:  # a closing stage after the plan (a pretrain's probe): the bar stays full
            data["stage_index"] = data["stage_count"] = len(plan)
            data["closing"] = True
        data["updated_at"] = time.time()
        self._progress = data

    def _later_stages_seconds(self, progress: Progress) -> float:
        plan = list(self.stage_plan)
        if progress.stage not in plan or progress.images_per_sec <= 0:
            return 0.0
        later = plan[plan.index(progress.stage) + 1 :]
        return sum(self.stage_plan[s] * self._images / progress.images_per_sec for s in later)

    def epoch_ended(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        with self.write_lock:
            self._pending.epochs.append((stage, epoch, dict(metrics)))

    def sampled(self, seconds: float, values: dict[str, float]) -> None:
        """A system sample: written with the next flush, as a run sample of this attempt."""
        with self.write_lock:
            pending = self._pending.samples
            pending.append((seconds, time.time(), dict(values)))
            del pending[:-MAX_BUFFERED_SAMPLES]

    def checkpoint(self, checkpoint: Checkpoint) -> None:
        with self.write_lock:
            self._pending.checkpoint = checkpoint
            self.last_checkpoint = (checkpoint.stage, checkpoint.epoch)
        self._wake.set()  # the epoch's metrics and checkpoint go out together

    def stage_ended(self, stage: str, summary: dict) -> None:
        self.stages[stage] = summary

    def wants_files(self) -> bool:
        return True

    def file_ready(self, name: str, data: bytes) -> None:
        with self.write_lock:
            self._pending.files[name] = data
        self._wake.set()  # shown on the run page while the next stage trains

    def trial_ended(self, trial: TrialReport) -> None:
        with self.write_lock:
            self._pending.trials.append(asdict(trial))
        self._wake.set()

    def should_stop(self) -> bool:
        return self.stop_reason is not None or self.draining.is_set()

    def should_pause(self) -> bool:
        """The run is asked to step aside: the checkpoint just handed over is where it
        resumes (a pause is never a stop: cancels and refusals are should_stop's)."""
        asked = self.set_aside
        if asked is not None and self.paused is None and self.last_checkpoint is not None:
            self.paused = asked
        return self.paused is not None

    # --- the link: a flush thread (data) and a beat thread (liveness) ---

    def __enter__(self) -> StoreRecorder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._report_worker(current=None)

    def take_pending(self) -> Pending:
        """Hand what is still unwritten to the caller (the final write), once a flush in
        flight has landed: from now on the link only beats, and a refused beat is the final
        write's to report."""
        with self._flush_lock, self.write_lock:
            pending, self._pending = self._pending, Pending()
            self._concluding = True
        return pending

    def _tick(self) -> float:
        settings = self.settings
        return max(min(settings.progress_interval_seconds, settings.heartbeat_seconds), 0.05)

    def _flush_loop(self) -> None:
        """Write what the job reported, when woken or every tick, until the final write
        takes over."""
        retry = _Retry(self, "writes")
        while not (self._done.is_set() or self._concluding or self.stop_reason == "superseded"):
            self._wake.wait(max(self._tick(), retry.backoff))
            self._wake.clear()
            if not retry.run(self._flush):
                return

    def _beat_loop(self) -> None:
        """Beat every tick, whatever the flush thread is writing, until the job ends."""
        retry = _Retry(self, "beats", through_refusals=True)
        while not self._done.wait(max(self._tick(), retry.backoff)):
            if not retry.run(self._beat):
                return

    def _flush(self) -> None:
        with self._flush_lock:
            with self.write_lock:
                pending, self._pending = self._pending, Pending()
            if not pending:
                return
            try:
                pending.stage(session_scope, self.run_id, self.attempt)
                with session_scope() as session:
                    attempts.guard(session)
                    pending.publish(session, self.run_id, self.attempt)
                    attempts.fence(session, self.run_id, self.attempt)
            except BaseException:
                with self.write_lock:
                    pending.merge_back(self._pending)
                    self._pending = pending
                raise

    def _beat(self) -> None:
        """One tiny fenced transaction: the heartbeat (the database's time now) and the
        progress, then whether a cancel was asked for. It needs no lock a data write holds
        but the run's row, which a publish takes only for its last moment."""
        progress, self._progress = self._progress, None
        try:
            with session_scope() as session:
                cancel = attempts.beat(
                    session=session, run_id=self.run_id, attempt=self.attempt, progress=progress
                )
                set_aside = scheduler.set_aside_request(session, self.run_id)
        except BaseException:
            if self._progress is None:
                self._progress = progress
            raise
        if cancel and self.stop_reason is None:
            self.stop_reason = "cancel"
        if set_aside != self.set_aside:
            log.info("run %s: %s", self.run_id, _asked(set_aside))
        self.set_aside = set_aside
        if time.monotonic() - self._reported >= self.settings.heartbeat_seconds:
            self._reported = time.monotonic()
            self._report_worker(current=self.run_id)

    def _report_worker(self, current: int | None) -> None:
        try:
            with session_scope() as session:
                workers_service.report(
                    session=session,
                    name=self.worker,
                    host=platform.node(),
                    device=self.device,
                    current_run_id=current,
                    lane=self.lane,
                    gpu_memory_mb=self.gpu_memory_mb,
                )
        except Exception as err:  # the next beat reports again; the run's beat is what counts
            log.debug("worker report failed: %s", err)


def _asked(request: scheduler.SetAside | None) -> str:
    if request is None:
        return "no longer asked to step aside"
    return (
        f"asked to step aside for run #{request.for_run_id} (priority {request.for_priority}) "
        "at its next epoch boundary"
    )


class _Retry:
    """One link thread's way through store trouble: transient errors are waited out with
    backoff (the data stays buffered), a refusal stops the job."""

    def __init__(self, recorder: StoreRecorder, what: str, *, through_refusals: bool = False):
        # through_refusals (the beats): a refused write stops the job, but the thread goes
        # on beating while it winds down, so once writes come back the attempt is alive
        # until its failure record lands (else a reaper could take it for dead meanwhile).
        self.recorder, self.what, self.through_refusals = recorder, what, through_refusals
        self.backoff: float = 0.0
        self.failing_since: float | None = None

    def run(self, step: Callable[[], None]) -> bool:
        """step() once; whether the thread goes on."""
        rec = self.recorder
        try:
            step()
        except AttemptSuperseded as err:
            if not rec._concluding:  # else the final write finished the run (or says why not)
                log.error("run %s: stopping this job, its write was refused: %s", rec.run_id, err)
                rec.stop_reason = "superseded"
            return False
        except Exception as err:
            if not is_transient(err):
                if rec.stop_reason is None:
                    log.exception("run %s: the store refused a write", rec.run_id)
                    rec.store_error, rec.stop_reason = err, "store-error"
                if self.through_refusals:
                    limit = rec.settings.heartbeat_seconds
                    self.backoff = min(max(self.backoff * 2, 0.5), MAX_BACKOFF, limit)
                    return True
                return False
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.warning(
                    "run %s: store unreachable, buffering (%s wait): %s", rec.run_id, self.what, err
                )
            limit = rec.settings.heartbeat_seconds
            self.backoff = min(max(self.backoff * 2, 0.5), MAX_BACKOFF, limit)
            return True
        if self.failing_since is not None:
            log.warning(
                "run %s: store reachable again after %.0f s; %s landed",
                rec.run_id,
                time.monotonic() - self.failing_since,
                self.what,
            )
        self.backoff, self.failing_since = 0.0, None
        return True
