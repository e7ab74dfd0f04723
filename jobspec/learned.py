"""What the autoencoders learned: the vocabulary the pretrain's probe stage writes
(worker/ml/probe.py) and the pages read (backend/runs/learned.py).

The stage runs after the last autoencoder trains and writes two files: LEARNED_FILE (the
scores per encoder, the budgets used and each encoder's 2-D PCA of test features) and
LEARNED_FILTERS_FILE (AE01's filters as an image grid). Its scores are named in
jobspec/metrics.py (PROBE_METRICS); a run from before the stage has neither file.
"""

from __future__ import annotations

from jobspec.stages import AE01, AE02, AE03

# Not in a pretrain's plan: it logs no epochs, only its progress (so "where a run stopped"
# and the ETA's epochs never see it).
PROBE_STAGE = "probe"
LEARNED_FILE = "learned.json"
LEARNED_FILTERS_FILE = "learned_filters.png"
LEARNED_VERSION = 1

RANDOM_ENCODER = "random"
# The encoders probed, in the order the pages list them: each depth of the trained stack,
# then a randomly initialised stacked encoder (the baseline that learned nothing).
ENCODERS: dict[str, str] = {
    AE01: "AE01",
    AE02: "AE01-02",
    AE03: "stacked (AE01-03)",
    RANDOM_ENCODER: "random init (stacked shape)",
}
