"""The autoencoder stages, in training order: defined once, imported by everyone.

Kept free of imports so the command line can read it without loading pydantic.
"""

from __future__ import annotations

AE01, AE02, AE03 = "ae01", "ae02", "ae03"
STAGES = (AE01, AE02, AE03)
# The stage a classifier trains under (its metrics are "finetune/<name>"), and the prefix of
# a tune's trials ("trial-0", "trial-1", ...). Named here so no layer retypes them: the
# classifier stage is spelled like the finetune kind, but it is a stage, not a kind.
FINETUNE_STAGE = "finetune"
TRIAL_STAGE = "trial"
