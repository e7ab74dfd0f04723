"""What a job kind may be called, and the names it shares its namespaces with.

A kind's name is a URL query value (`/runs/new?kind=...`), a Celery task (`stacklab.<name>`),
a key of `store.queue.enqueue` and a tab of the new-run form. Those namespaces also hold
names that are not kinds, defined here once: the queue's other tasks (a data set import,
scoring a stopped finetune) and the form's pseudo-kinds (the ablation study's tab and its
old name). `jobspec.kinds.register` refuses a name in `RESERVED` or one that is not a
short lowercase identifier. Pure standard library.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

TASK_PREFIX = "stacklab."
MAX_LENGTH = 32
PATTERN = re.compile(r"[a-z][a-z0-9_]*")  # a Python, CSS and URL-safe identifier

IMPORT = "import"  # store.queue.enqueue's name for a data set import (its id: the import's)
IMPORT_TASK = TASK_PREFIX + "import_dataset"
EVALUATE = "evaluate"  # scoring a cancelled or failed finetune's classifier (its id: the run's)
EVALUATE_TASK = TASK_PREFIX + "evaluate"
# Tasks that are not a job kind's, by the name enqueue() takes.
OTHER_TASKS: Mapping[str, str] = MappingProxyType({IMPORT: IMPORT_TASK, EVALUATE: EVALUATE_TASK})

STUDY_FORM = "ablation"  # the new-run form's tab for a group of finetunes (POST /api/ablations)
LEGACY_FORM_TABS: Mapping[str, str] = MappingProxyType({"augmentation": STUDY_FORM})

RESERVED = frozenset(
    {
        *OTHER_TASKS,
        *(task.removeprefix(TASK_PREFIX) for task in OTHER_TASKS.values()),
        STUDY_FORM,
        *LEGACY_FORM_TABS,
    }
)


def refusal(name: str) -> str | None:
    """Why `name` cannot be a job kind's, or None when it can."""
    if not PATTERN.fullmatch(name) or len(name) > MAX_LENGTH:
        return (
            f"job kind name {name!r} must be a lowercase letter, then lowercase letters, "
            f"digits or underscores, at most {MAX_LENGTH} characters"
        )
    if name in RESERVED:
        return f"job kind name {name!r} is reserved (taken by: {', '.join(sorted(RESERVED))})"
    return None
