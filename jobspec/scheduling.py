"""The scheduler's vocabulary, defined once: lanes, the range of a priority, and the
outcome words a set-aside run shows. Pure standard library (jobspec is read by every layer).

A lane is a kind of worker: training workers run the job kinds' runs; the CPU lane runs
what must never wait behind training (data set imports, "evaluate now" of a stopped
finetune). Each lane has its own Celery queue (store.queue.lane_queue).
"""

from __future__ import annotations

from enum import StrEnum

# Priorities a run may hold, whoever asks (the database's CHECK, migration 0012); a
# token's own ceiling is a setting (STACKLAB_MAX_PRIORITY, STACKLAB_PRIORITY_LIMITS).
PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
DEFAULT_PRIORITY = 0


class Lane(StrEnum):
    """Which workers take a piece of work."""

    TRAINING = "training"  # the job kinds' runs (GPU or CPU training workers)
    CPU = "cpu"  # imports and evaluations: never behind training

    @property
    def label(self) -> str:
        return "training" if self is Lane.TRAINING else "CPU lane"
