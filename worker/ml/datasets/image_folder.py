"""Import an image-folder tree (train/<class>/*, test/<class>/*) from a directory or a .zip."""

from __future__ import annotations

import io
import os
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from worker.ml.datasets.archive_safety import Parts, check_class_count, is_ignored, read_zip_files
from worker.ml.datasets.dataset import IMAGE_SHAPE, SPLITS, DataError, Dataset
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, with_max_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
# Bounds memory when resize=True lets large photos in; far above any sane thumbnail source.
MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_image_pixels
LAYOUT = "train/<class>/<image> and test/<class>/<image> (optionally inside one top folder)"

# images[split][class] -> list of (file name, pixels)
Images = dict[str, dict[str, list[tuple[str, np.ndarray]]]]


@dataclass
class _Decoding:
    """What every image of one import is decoded under: the limits and pixels left to spend."""

    limits: ImportLimits
    resize: bool
    pixels_left: int

    def spend(self, label: str, pixels: int) -> None:
        """Count pixels about to be decoded, refusing once the import's budget is spent."""
        self.pixels_left -= pixels
        if self.pixels_left < 0:
            raise DataError(
                f"{label}: the images add up to more than {self.limits.max_total_pixels:,} "
                "decoded pixels (max_total_pixels)"
            )


def import_image_folder(
    path: str | Path,
    *,
    resize: bool = False,
    limits: ImportLimits = DEFAULT_LIMITS,
    max_bytes: int | None = None,
) -> Dataset:
    """Read PNG/JPEG images from train/<class>/ and test/<class>/ in a directory or .zip."""
    path = Path(path)
    limits = with_max_bytes(limits, max_bytes)
    if path.is_dir():
        files, name = _dir_files(path, limits), path.name
    elif path.is_file():
        # A generator: each member is decoded before the next one is read.
        files, name = read_zip_files(path, limits), path.stem
    else:
        raise DataError(f"{path}: file or folder not found")
    images = _collect(path, files, _Decoding(limits, resize, limits.max_total_pixels))
    class_names = _class_names(path, images)
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        x, y = _stack(images[split], class_names)
        arrays |= {f"x_{split}": x, f"y_{split}": y}
    try:
        return Dataset(name=name, class_names=class_names, source="image-folder", **arrays)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def _dir_files(root: Path, limits: ImportLimits) -> Iterator[tuple[Parts, bytes]]:
    """Yield (relative parts, content) of each non-hidden file under root, size-checked first."""
    found: list[tuple[Parts, Path]] = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not is_ignored((d,))]  # skip .git and the like unread
        for n in sorted(names):
            file = Path(folder) / n
            parts = file.relative_to(root).parts
            if not is_ignored(parts):
                found.append((parts, file))
            if len(found) > limits.max_members:
                raise DataError(f"{root}: more than {limits.max_members:,} files (max_members)")
    total = sum(f.stat().st_size for _, f in found)
    max_bytes = limits.max_bytes
    if total > max_bytes:
        raise DataError(f"{root}: images total {total:,} bytes, over the {max_bytes:,} limit")
    for parts, file in found:
        yield parts, file.read_bytes()


def _place(path: Path, parts: Parts) -> tuple[Parts, str, str]:
    """Split a file's parts into (wrapping folder, split, class), refusing any other layout."""
    for prefix_len in (0, 1):
        if len(parts) == prefix_len + 3 and parts[prefix_len] in SPLITS:
            return parts[:prefix_len], parts[prefix_len], parts[prefix_len + 1]
    raise DataError(f"{path}: unexpected file {'/'.join(parts)!r}; expected {LAYOUT}")


def _collect(path: Path, files: Iterator[tuple[Parts, bytes]], decoding: _Decoding) -> Images:
    """Decode every file into images[split][class], checking they all share one layout."""
    images: Images = {split: defaultdict(list) for split in SPLITS}
    prefix: Parts | None = None
    classes: set[str] = set()
    for parts, data in files:
        top, split, cls = _place(path, parts)
        if cls not in classes:
            classes.add(cls)
            check_class_count(str(path), len(classes), decoding.limits)
        if prefix is None:
            prefix = top
        elif top != prefix:
            raise DataError(
                f"{path}: {'/'.join(parts)!r} is outside the top folder "
                f"{'/'.join(prefix) or '(none)'!r}; expected {LAYOUT}"
            )
        label = f"{path}: {'/'.join(parts)}"
        images[split][cls].append((parts[-1], _decode(data, label, decoding)))
    if prefix is None:
        raise DataError(f"{path}: no images found; expected {LAYOUT}")
    return images


def _decode(data: bytes, label: str, decoding: _Decoding) -> np.ndarray:
    """Decode one PNG/JPEG into a 32x32x3 uint8 array (converted only when resize is on)."""
    if not label.lower().endswith(IMAGE_SUFFIXES):
        raise DataError(f"{label}: not an image file (expected {', '.join(IMAGE_SUFFIXES)})")
    try:
        # Only the PNG and JPEG parsers ever see upload bytes; open() reads just the header.
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as img:
            return _to_array(img, label, decoding)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(f"{label}: not a decodable image ({exc})") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{label}: image too large ({exc})") from exc


def _to_array(img: Image.Image, label: str, decoding: _Decoding) -> np.ndarray:
    """Pixels of an opened image, refusing formats, sizes and modes that need converting."""
    if img.format not in IMAGE_FORMATS:
        raise DataError(f"{label}: unsupported image format {img.format}; expected PNG or JPEG")
    # From the header, before decoding; PIL's own check reads a global anyone may turn off.
    max_pixels = decoding.limits.max_image_pixels
    if img.width * img.height > max_pixels:
        raise DataError(
            f"{label}: image is {img.width}x{img.height}, more than {max_pixels:,} pixels "
            "(max_image_pixels)"
        )
    if img.size == IMAGE_SHAPE[:2] and img.mode == "RGB":
        decoding.spend(label, img.width * img.height)
        return np.asarray(img, dtype=np.uint8)
    if not decoding.resize:
        raise DataError(
            f"{label}: image is {img.width}x{img.height} {img.mode}; expected 32x32 RGB "
            "(import with resize=True / --resize to convert)"
        )
    img.draft("RGB", IMAGE_SHAPE[:2])  # lets JPEG decode at reduced scale: much faster
    decoding.spend(label, img.width * img.height)  # the size draft() left is what decodes
    small = img.convert("RGB").resize(IMAGE_SHAPE[:2], Image.Resampling.BICUBIC)
    return np.asarray(small, dtype=np.uint8)


def _class_names(path: Path, images: Images) -> tuple[str, ...]:
    """Sorted class folder names, which must be the same set in train and test."""
    train, test = set(images["train"]), set(images["test"])
    if not train or not test:
        empty = "train" if not train else "test"
        raise DataError(f"{path}: no {empty} images; expected {LAYOUT}")
    if train != test:
        raise DataError(
            f"{path}: class folders differ between train and test: "
            f"only in train: {sorted(train - test) or '-'}; "
            f"only in test: {sorted(test - train) or '-'}"
        )
    return tuple(sorted(train))


def _stack(
    by_class: dict[str, list[tuple[str, np.ndarray]]], names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Images ordered by class then file name, with their labels."""
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    for index, cls in enumerate(names):
        for _, arr in sorted(by_class[cls], key=lambda item: item[0]):
            pixels.append(arr)
            labels.append(index)
    return np.stack(pixels), np.array(labels, dtype=np.int64)
