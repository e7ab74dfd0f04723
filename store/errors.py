"""Errors the services raise; the web maps them to 404 and 422."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class NotFound(LookupError):
    """No such run, data set, artifact or group."""

    def __init__(self, what: str, key: object) -> None:
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


@dataclass(frozen=True)
class FieldError:
    """One bad field of a request: its dotted path, why, and a machine-readable type."""

    field: str
    reason: str
    type: str = "invalid_request"


class InvalidRequest(ValueError):
    """A request that would make a run fail: refused before anything is queued.

    `field`/`reason` are the first problem; `errors` lists every one found (a form shows
    them all at once)."""

    def __init__(self, field: str, reason: str, *, more: Sequence[FieldError] = ()):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.errors: list[FieldError] = [FieldError(field, reason), *more]

    @classmethod
    def of(cls, errors: Sequence[FieldError]) -> InvalidRequest:
        """One refusal naming every error (at least one)."""
        first, *rest = errors
        err = cls(first.field, first.reason, more=rest)
        err.errors[0] = first  # keeps its type
        return err


class AttemptSuperseded(RuntimeError):
    """A worker wrote for an attempt that is no longer the run's current one: it must stop."""

    def __init__(self, run_id: int, attempt: int, reason: str):
        super().__init__(f"run {run_id} attempt {attempt}: {reason}")
        self.run_id = run_id
        self.attempt = attempt
        self.reason = reason
