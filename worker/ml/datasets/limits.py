"""Budgets for importing untrusted dataset files: sizes, counts and depths checked as we read."""

from __future__ import annotations

from dataclasses import dataclass, replace

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class ImportLimits:
    """What one import may cost; every reader refuses as soon as a budget is passed."""

    # Uncompressed bytes of all archive members (or files of a folder) together.
    max_bytes: int = 2 * GIB
    # Archive entries, folders included: a CIFAR-10 image-folder zip has about 60,000.
    max_members: int = 100_000
    # Zip central directory (names, extras) or tar headers (512-byte blocks, pax, long names).
    max_header_bytes: int = 32 * MIB
    # Pixels of one image, read from its header before decoding (PIL's own cap is global).
    max_image_pixels: int = 40_000_000
    # Pixels decoded over a whole import: bounds the time resize=True can spend on big photos.
    max_total_pixels: int = 2_000_000_000
    max_classes: int = 1000
    # One pickled CIFAR batch: the official ones are 31 MB, CIFAR-100's train file 155 MB.
    max_pickle_bytes: int = 256 * MIB
    # Opcodes in one pickle (about two per label or file name), and container nesting.
    max_pickle_ops: int = 1_000_000
    max_pickle_depth: int = 32

    def __post_init__(self) -> None:
        """Refuse non-positive budgets, which would make every import fail obscurely."""
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ImportLimits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = ImportLimits()


def with_max_bytes(limits: ImportLimits, max_bytes: int | None) -> ImportLimits:
    """limits with max_bytes replaced, for callers of the older max_bytes= keyword."""
    return limits if max_bytes is None else replace(limits, max_bytes=max_bytes)
