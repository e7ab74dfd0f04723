"""What a job kind's worker entry point returns: the result contract between
`worker/jobs.py` and every kind's training function. Pure standard library."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended.

    `cancelled`: it stopped early (what it trained is kept); `result`: the JSON the store
    keeps on the run; `split`: the train/validation split it trained on (`Split.record()`:
    seed, fraction, n_train, n_val, fingerprint; None for a job without one); `files`:
    weights, manifests and histories to store as the run's artifacts.
    """

    cancelled: bool
    result: Mapping[str, Any]
    split: Mapping[str, Any] | None = None
    files: Sequence[Path] = field(default_factory=tuple)

    def stored_result(self) -> dict[str, Any]:
        """The result as stored: the job's fields, plus `split` when it has one."""
        out = dict(self.result)
        if self.split is not None:
            out["split"] = dict(self.split)
        return out
