"""A test-only job kind whose batches last as long as the test wants: a batch in progress
writes `in-batch` into STACKLAB_TEST_HOLD_DIR and ends once the test writes `release` there
(a batch longer than any fixed wait, without a test that waits for it). Without the
variable its batches are quick. `STACKLAB_KIND_MODULES=tests.cli.slowkind_plugin` plugs
it in; importing this module registers nothing, so the tests read its names without
adding a kind to their own process's registry.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from jobspec.kinds import JobKind, RankKey

NAME = "slowbatch"
PLUGIN = "tests.cli.slowkind_plugin"
STAGE = "hold"
HOLD_DIR_ENV = "STACKLAB_TEST_HOLD_DIR"


class SlowBatchConfig(BaseModel):
    """Epochs of one batch each; each batch held until released (see the module)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(2, ge=1, le=1000, description="Epochs, one batch each")


SLOW_BATCH = JobKind(
    name=NAME,
    params=SlowBatchConfig,
    entry="tests.cli.slowkind_job:hold",
    plan=lambda config: {STAGE: config.epochs},
    ranking=(RankKey(f"{STAGE}/loss", "loss"),),
)
