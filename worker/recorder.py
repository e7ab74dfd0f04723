"""A Reporter that writes a run's metrics, progress, trials and cancel checks to the store."""

from __future__ import annotations

import time
from dataclasses import asdict

from backend.db import session_scope
from backend.runs import metrics as metrics_service
from backend.runs import service as runs_service
from worker.ml.callbacks import Progress, Reporter, TrialReport


class StoreRecorder(Reporter):
    """Metrics at every epoch; progress at most every `progress_interval` seconds."""

    def __init__(
        self,
        run_id: int,
        *,
        progress_interval: float = 1.0,
        cancel_interval: float = 0.25,
        stage_plan: dict[str, int] | None = None,
    ):
        self.run_id = run_id
        self.progress_interval = progress_interval
        self.cancel_interval = cancel_interval
        self.stage_plan = stage_plan or {}  # stage -> epochs, for an ETA across stages
        self.stages: dict[str, dict] = {}
        self._images = 0
        self._last_progress = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False

    def stage_started(self, stage, *, epochs, steps, images):
        self._images = images
        self._last_progress = 0.0  # show the new stage at once

    def batch_ended(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval and progress.step != progress.steps:
            return
        self._last_progress = now
        self._write_progress(progress)

    def _write_progress(self, progress: Progress) -> None:
        data = asdict(progress)
        data["eta_seconds"] = progress.eta_seconds + self._later_stages_seconds(progress)
        plan = list(self.stage_plan)
        if progress.stage in plan:
            data["stage_index"], data["stage_count"] = plan.index(progress.stage) + 1, len(plan)
        data["updated_at"] = time.time()
        with session_scope() as session:
            runs_service.beat(session=session, run_id=self.run_id, progress=data)

    def _later_stages_seconds(self, progress: Progress) -> float:
        plan = list(self.stage_plan)
        if progress.stage not in plan or progress.images_per_sec <= 0:
            return 0.0
        later = plan[plan.index(progress.stage) + 1 :]
        return sum(self.stage_plan[s] * self._images / progress.images_per_sec for s in later)

    def epoch_ended(self, stage: str, epoch: int, metrics: dict[str, float]) -> None:
        with session_scope() as session:
            metrics_service.log_epoch(
                session=session, run_id=self.run_id, stage=stage, step=epoch, values=metrics
            )

    def stage_ended(self, stage: str, summary: dict) -> None:
        self.stages[stage] = summary

    def trial_ended(self, trial: TrialReport) -> None:
        with session_scope() as session:
            metrics_service.record_trial(session=session, run_id=self.run_id, trial=asdict(trial))

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now - self._last_cancel_check >= self.cancel_interval:
            self._last_cancel_check = now
            with session_scope() as session:
                self._cancelled = runs_service.cancel_requested(session, self.run_id)
        return self._cancelled
