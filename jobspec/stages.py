"""The autoencoder stages, in training order: defined once, imported by everyone.

Kept free of imports so the command line can read it without loading pydantic.
"""

from __future__ import annotations

STAGES = ("ae01", "ae02", "ae03")
