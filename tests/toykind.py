"""A toy job kind with one parameter, declared exactly as docs/ARCHITECTURE.md's "Adding a
job kind" says: the contract test (tests/test_kind_contract.py) plugs it in through
`STACKLAB_KIND_MODULES=tests.toykind`, in the web and in real worker processes.

Its training function is in tests/toykind_job.py, named by `entry`: the web imports this
declaration only, never the worker side.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobspec.kinds import JobKind, RankKey, register

NAME = "sheepcount"
STAGE = "count"
UNLUCKY = 13  # a count the job refuses: how the contract test gets a failed run


class SheepCountConfig(BaseModel):
    """Counts sheep, one an epoch: a job kind that trains nothing."""

    model_config = ConfigDict(extra="forbid")

    sheep: int = Field(3, ge=1, le=100_000, description="How many sheep to count")


SHEEP_COUNT = JobKind(
    name=NAME,
    params=SheepCountConfig,
    entry="tests.toykind_job:count",
    plan=lambda config: {STAGE: config.sheep},
    ranking=(RankKey(f"{STAGE}/loss", "loss"),),
    columns=lambda params: [["sheep", str(params.get("sheep", "?"))]],
)

register(SHEEP_COUNT)
