"""The status vocabulary, defined once: a run's status, how an attempt ended, where a data
set import stands, an Optuna trial's state. Pure standard library, read by every layer
(store columns and the database CHECK of migration 0007, the worker, the web, and through
the web the templates and `dom.status` in static/js/dom.js).

Each concept is its own enum, even where two share a word: a run is "failed", an attempt
that failed is too, but an attempt can also be "lost" and a run never is. Groups are
defined here as class methods returning tuples (stable order: usable in SQL `IN`, in
Jinja and in JSON); a member answers `is_active`/`is_finished` itself.
`tests/test_vocabulary.py` fails on a quoted status name anywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any


class RunStatus(StrEnum):
    """Where a run stands. It only moves along `transitions()`."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def active(cls) -> tuple[RunStatus, ...]:
        """Waiting for or holding a worker: the run may still change."""
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def finished(cls) -> tuple[RunStatus, ...]:
        """Ended, one way or another; only a user's re-queue reopens it."""
        return (cls.SUCCEEDED, cls.FAILED, cls.CANCELLED)

    @classmethod
    def stopped(cls) -> tuple[RunStatus, ...]:
        """Ended without succeeding: what it trained is partial, and it may be re-queued."""
        return (cls.FAILED, cls.CANCELLED)

    @classmethod
    def transitions(cls) -> Mapping[RunStatus, frozenset[RunStatus]]:
        """The only moves a status may make. running -> queued: its worker died or was told
        to stop, and another attempt resumes it. A finished run reopens only by a re-queue."""
        return _TRANSITIONS

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self in RunStatus.active()

    @property
    def is_finished(self) -> bool:
        """Succeeded, failed or cancelled."""
        return self in RunStatus.finished()

    @property
    def is_stopped(self) -> bool:
        """Failed or cancelled."""
        return self in RunStatus.stopped()

    def can_move_to(self, target: RunStatus | str) -> bool:
        """Whether a run in this status may move to `target`."""
        return target in _TRANSITIONS[self]


_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = MappingProxyType(
    {
        RunStatus.QUEUED: frozenset({RunStatus.RUNNING, RunStatus.CANCELLED}),
        RunStatus.RUNNING: frozenset(
            {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.QUEUED}
        ),
        RunStatus.FAILED: frozenset({RunStatus.QUEUED}),
        RunStatus.CANCELLED: frozenset({RunStatus.QUEUED}),
        RunStatus.SUCCEEDED: frozenset(),
    }
)


class AttemptOutcome(StrEnum):
    """How one try at a run ended (a run's attempts are numbered from 1)."""

    RUNNING = "running"  # still going
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # its worker stopped beating: died, froze or lost its machine
    INTERRUPTED = "interrupted"  # its worker was told to stop (SIGTERM) and handed it back
    # set aside at an epoch boundary for a queued run of higher priority (store.scheduler)
    PREEMPTED = "preempted"

    @classmethod
    def ended(cls) -> tuple[AttemptOutcome, ...]:
        """Every outcome but still running."""
        return tuple(o for o in cls if o is not cls.RUNNING)

    @classmethod
    def of_run(cls, status: RunStatus | str) -> AttemptOutcome:
        """The outcome of the attempt that brought a run to a finished `status`."""
        return cls(RunStatus(status).value)

    @classmethod
    def clean(cls) -> tuple[AttemptOutcome, ...]:
        """Still running or succeeded: nothing about it needs explaining on the run page."""
        return (cls.RUNNING, cls.SUCCEEDED)

    @property
    def is_finished(self) -> bool:
        """The attempt is over."""
        return self is not AttemptOutcome.RUNNING


class ImportState(StrEnum):
    """Where a data set import stands in its table."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @classmethod
    def active(cls) -> tuple[ImportState, ...]:
        """Waiting for or held by a worker: its name is taken."""
        return (cls.QUEUED, cls.RUNNING)

    @classmethod
    def finished(cls) -> tuple[ImportState, ...]:
        """Done or failed."""
        return (cls.DONE, cls.FAILED)

    @property
    def is_active(self) -> bool:
        """Queued or running."""
        return self in ImportState.active()

    @property
    def phase(self) -> ImportPhase:
        """What the API's `state` says: pending while active, else done or failed."""
        return ImportPhase.PENDING if self.is_active else ImportPhase(self.value)


class ImportPhase(StrEnum):
    """An import as the API and the data sets page show it (`ImportState` is the detail)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class TrialState(StrEnum):
    """Where one Optuna trial of a tune stands, as tune_trials.state stores it and the study
    page shows it: the lowercase name of the `optuna.trial.TrialState` member (a second
    vocabulary, Optuna's; mirrored here so the web need not import Optuna to read it)."""

    RUNNING = "running"
    WAITING = "waiting"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAIL = "fail"

    @classmethod
    def of(cls, state: Enum) -> TrialState:
        """The member for an `optuna.trial.TrialState` (matched by name)."""
        return cls(state.name.lower())


def sql_in(column: str, values: tuple[StrEnum, ...] | type[StrEnum]) -> str:
    """`column IN ('a', 'b')` for a CHECK constraint, a trigger or a partial index."""
    quoted = ", ".join(f"'{member.value}'" for member in values)
    return f"{column} IN ({quoted})"


def vocabulary() -> dict[str, Any]:
    """Every value and group as JSON, for the templates and `dom.status` in the browser."""
    return {
        "run": {member.name: member.value for member in RunStatus},
        "active": list(RunStatus.active()),
        "finished": list(RunStatus.finished()),
        "stopped": list(RunStatus.stopped()),
        "attempt": {member.name: member.value for member in AttemptOutcome},
        "cleanAttempt": list(AttemptOutcome.clean()),
        "importState": {member.name: member.value for member in ImportState},
        "importPhase": {member.name: member.value for member in ImportPhase},
    }
