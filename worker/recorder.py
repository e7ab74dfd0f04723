"""The run's link to the store while it trains: the training thread never waits for it.

The job reports into memory (progress, epoch metrics, system samples, checkpoints,
trials); a background thread writes them, each write fenced by the attempt (see
store.runs.attempts), and beats for the whole job, exports and uploads included. A store
outage only delays the writes: they stay buffered and are retried with backoff while
training goes on. A refused write (another attempt owns the run now) stops the job at its
next batch. Samples are time series (store.runs.samples), never written as epochs.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from store.artifacts import service as artifacts_service
from store.db import is_transient, session_scope
from store.errors import AttemptSuperseded
from store.runs import attempts
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

    def __bool__(self) -> bool:
        return bool(
            self.epochs or self.samples or self.trials or self.files or self.checkpoint is not None
        )

    def write(self, session: Session, run_id: int, attempt: int) -> None:
        """Everything pending in the caller's (fenced) transaction."""
        for stage, epoch, values in self.epochs:
            metrics_service.log_epoch(
                session=session, run_id=run_id, stage=stage, step=epoch, values=values
            )
        samples_service.record(
            session=session, run_id=run_id, attempt=attempt, readings=self.samples
        )
        for trial in self.trials:
            metrics_service.record_trial(session=session, run_id=run_id, trial=trial)
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

    def merge_back(self, newer: Pending) -> None:
        """Put a failed write's data back in front of what arrived since."""
        self.epochs += newer.epochs
        self.samples = (self.samples + newer.samples)[-MAX_BUFFERED_SAMPLES:]
        self.trials += newer.trials
        self.files = {**self.files, **newer.files}
        if newer.checkpoint is not None:
            self.checkpoint = newer.checkpoint


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
    ) -> None:
        self.run_id, self.attempt = run_id, attempt
        self.settings, self.worker, self.device = settings, worker, device
        self.stage_plan = stage_plan or {}  # stage -> epochs, for an ETA across stages
        self.draining = draining or threading.Event()
        self.stages: dict[str, dict] = {}
        self.stop_reason: str | None = None  # cancel | superseded | store-error
        self.store_error: BaseException | None = None
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
        self._thread = threading.Thread(target=self._loop, name=f"run-{run_id}-link", daemon=True)

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

    # --- the link thread ---

    def __enter__(self) -> StoreRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._report_worker(current=None)

    def take_pending(self) -> Pending:
        """Hand what is still unwritten to the caller (the final write): from now on this
        thread only beats, and a refused beat is the final write's to report."""
        with self._flush_lock, self.write_lock:
            pending, self._pending = self._pending, Pending()
            self._concluding = True
        return pending

    def _loop(self) -> None:
        settings = self.settings
        tick = max(min(settings.progress_interval_seconds, settings.heartbeat_seconds), 0.05)
        backoff, failing_since = 0.0, None
        while not self._done.is_set() and self.stop_reason != "superseded":
            self._wake.wait(max(tick, backoff))
            self._wake.clear()
            try:
                self._flush()
                self._beat()
                if failing_since is not None:
                    log.warning(
                        "run %s: store reachable again after %.0f s; buffered writes landed",
                        self.run_id,
                        time.monotonic() - failing_since,
                    )
                backoff, failing_since = 0.0, None
            except AttemptSuperseded as err:
                if self._concluding:  # the final write finished the run (or will say why not)
                    return
                log.error("run %s: stopping this job, its write was refused: %s", self.run_id, err)
                self.stop_reason = "superseded"
            except Exception as err:
                if not is_transient(err):
                    log.exception("run %s: the store refused a write", self.run_id)
                    self.store_error, self.stop_reason = err, "store-error"
                    return
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("run %s: store unreachable, buffering: %s", self.run_id, err)
                backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF, settings.heartbeat_seconds)

    def _flush(self) -> None:
        with self._flush_lock:
            with self.write_lock:
                pending, self._pending = self._pending, Pending()
            if not pending:
                return
            try:
                with session_scope() as session:
                    attempts.fence(session, self.run_id, self.attempt)
                    pending.write(session, self.run_id, self.attempt)
            except BaseException:
                with self.write_lock:
                    pending.merge_back(self._pending)
                    self._pending = pending
                raise

    def _beat(self) -> None:
        progress, self._progress = self._progress, None
        try:
            with session_scope() as session:
                cancel = attempts.beat(
                    session=session, run_id=self.run_id, attempt=self.attempt, progress=progress
                )
        except BaseException:
            if self._progress is None:
                self._progress = progress
            raise
        if cancel and self.stop_reason is None:
            self.stop_reason = "cancel"
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
                )
        except Exception as err:  # the worker list is cosmetic; the run's beat is what counts
            log.debug("worker report failed: %s", err)
