"""Errors the services raise; the web maps them to 404 and 422."""

from __future__ import annotations


class NotFound(LookupError):
    """No such run, data set, artifact or group."""

    def __init__(self, what: str, key):
        super().__init__(f"{what} {key} not found")
        self.what = what
        self.key = key


class InvalidRequest(ValueError):
    """A request that would make a run fail: refused before anything is queued."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class AttemptSuperseded(RuntimeError):
    """A worker wrote for an attempt that is no longer the run's current one: it must stop."""

    def __init__(self, run_id: int, attempt: int, reason: str):
        super().__init__(f"run {run_id} attempt {attempt}: {reason}")
        self.run_id = run_id
        self.attempt = attempt
        self.reason = reason
