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
    # What an import decodes to, checked before allocating (npz headers, image counts as
    # images decode, CIFAR batch shapes): a 1 MB npz of zeros may declare 400,000 images.
    # CIFAR-10 and CIFAR-100 hold 60,000 images (185 MB); SVHN 99,289; Tiny ImageNet 110,000.
    max_images: int = 120_000
    # Bytes of the decoded arrays (images, labels, names) together: 120,000 images are
    # 369 MB; a few-MB upload must not make the parser grow by more than about 500 MB.
    max_decoded_bytes: int = 512 * MIB

    def __post_init__(self) -> None:
        """Refuse non-positive budgets, which would make every import fail obscurely."""
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ImportLimits.{name} must be a positive integer, got {value!r}")


DEFAULT_LIMITS = ImportLimits()

# The setting a web import's budget comes from, named in refusals; the others are fixed.
SETTINGS = {
    "max_classes": "STACKLAB_MAX_CLASSES",
    "max_images": "STACKLAB_IMPORT_MAX_IMAGES",
    "max_decoded_bytes": "STACKLAB_IMPORT_MAX_DECODED_MB",
}


def named(field: str) -> str:
    """How a refusal names a budget: the field, and the setting that sets it if any."""
    setting = SETTINGS.get(field)
    return f"{field}, {setting}" if setting else field


def with_max_bytes(limits: ImportLimits, max_bytes: int | None) -> ImportLimits:
    """limits with max_bytes replaced, for callers of the older max_bytes= keyword."""
    return limits if max_bytes is None else replace(limits, max_bytes=max_bytes)
