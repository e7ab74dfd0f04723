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

from jobspec import text
from worker.ml.datasets.archive_safety import (
    IMAGE_BYTES,
    Parts,
    check_class_count,
    check_class_name,
    check_output,
    count_zip_files,
    is_ignored,
    read_zip_files,
)
from worker.ml.datasets.dataset import IMAGE_SHAPE, SPLITS, DataError, Dataset, reason
from worker.ml.datasets.limits import DEFAULT_LIMITS, ImportLimits, with_max_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_FORMATS = ("PNG", "JPEG")
# Bounds memory when resize=True lets large photos in; far above any sane thumbnail source.
MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_image_pixels
LAYOUT = "train/<class>/<image> and test/<class>/<image> (optionally inside one top folder)"

# images[split][class] -> list of (file name, row of the decoded pixels)
Images = dict[str, dict[str, list[tuple[str, int]]]]


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
        count, files = _dir_files(path, limits)
        name = path.name
    elif path.is_file():
        # A generator: each member is decoded before the next one is read.
        count, files = count_zip_files(path, limits), read_zip_files(path, limits)
        name = path.stem
    else:
        raise DataError(f"{path}: file or folder not found")
    # Decoded straight into one array (pages are touched only as images land in it), then
    # put in order in place: never the images twice over (a list, then np.stack).
    pixels = np.empty((min(count, limits.max_images), *IMAGE_SHAPE), np.uint8)
    images = _collect(path, files, _Decoding(limits, resize, limits.max_total_pixels), pixels)
    class_names = _class_names(path, images)
    arrays = _arrange(images, class_names, pixels)
    try:
        return Dataset(name=name, class_names=class_names, source="image-folder", **arrays)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def _dir_files(root: Path, limits: ImportLimits) -> tuple[int, Iterator[tuple[Parts, bytes]]]:
    """How many non-hidden files are under root, and (relative parts, content) of each one
    as it is read, size-checked first."""
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
    return len(found), ((parts, file.read_bytes()) for parts, file in found)


def _place(path: Path, parts: Parts) -> tuple[Parts, str, str]:
    """Split a file's parts into (wrapping folder, split, class), refusing any other layout."""
    for prefix_len in (0, 1):
        if len(parts) == prefix_len + 3 and parts[prefix_len] in SPLITS:
            return parts[:prefix_len], parts[prefix_len], parts[prefix_len + 1]
    raise DataError(f"{path}: unexpected file {'/'.join(parts)!r}; expected {LAYOUT}")


def _collect(
    path: Path, files: Iterator[tuple[Parts, bytes]], decoding: _Decoding, pixels: np.ndarray
) -> Images:
    """Decode every file into a row of pixels, noted in images[split][class], checking they
    all share one layout."""
    images: Images = {split: defaultdict(list) for split in SPLITS}
    prefix: Parts | None = None
    classes: dict[str, str] = {}  # folder name -> class name (checked, normalised)
    for count, (parts, data) in enumerate(files, 1):
        top, split, folder = _place(path, parts)
        if folder not in classes:
            where = f"{path}: {_shown('/'.join(parts[:-1]))}/"
            classes[folder] = check_class_name(where, folder)
            check_class_count(str(path), len(set(classes.values())), decoding.limits)
            _check_summary(path, set(classes.values()))
        cls = classes[folder]
        if prefix is None:
            prefix = top
        elif top != prefix:
            raise DataError(
                f"{path}: {'/'.join(parts)!r} is outside the top folder "
                f"{'/'.join(prefix) or '(none)'!r}; expected {LAYOUT}"
            )
        label = f"{path}: {_shown('/'.join(parts))}"
        # before decoding: the budgets bound what the decoded images take
        check_output(label, count, count * IMAGE_BYTES, decoding.limits)
        if count > len(pixels):  # the archive changed under us
            raise DataError(f"{path}: more images than the archive listed")
        pixels[count - 1] = _decode(data, label, decoding)
        images[split][cls].append((parts[-1], count - 1))
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
    except (DataError, MemoryError):
        raise
    except UnidentifiedImageError:  # its message names the BytesIO, not the file
        raise DataError(f"{label}: not a decodable image (not PNG or JPEG)") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{label}: image too large ({reason(exc)})") from exc
    except Exception as exc:  # corrupt images fail PIL in many ways (struct, zlib, index...)
        raise DataError(f"{label}: not a decodable image ({reason(exc)})") from exc


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


def _shown(name: str) -> str:
    """A member or folder name fit for a message: bad characters as U+FFFD, cut short."""
    shown = text.shown(name)
    return shown if len(shown) <= 120 else f"{shown[:117]}..."


def _check_summary(path: Path, names: set[str]) -> None:
    """All class names together within MAX_CLASS_SUMMARY_CHARS (every data set list shows them)."""
    total = sum(len(n) for n in names)
    if total > text.MAX_CLASS_SUMMARY_CHARS:
        raise DataError(
            f"{path}: the class folder names add up to {total:,} characters, more than the "
            f"{text.MAX_CLASS_SUMMARY_CHARS:,} allowed"
        )


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


def _arrange(images: Images, names: tuple[str, ...], pixels: np.ndarray) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test: images ordered by split, class, then file name,
    moved into that order within `pixels` (views of it, no copy)."""
    order: list[int] = []
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        labels: list[int] = []
        for index, cls in enumerate(names):
            rows = [row for _, row in sorted(images[split][cls], key=lambda item: item[0])]
            order += rows
            labels += [index] * len(rows)
        arrays[f"y_{split}"] = np.array(labels, dtype=np.int64)
    _permute(pixels, order)
    n_train = len(arrays["y_train"])
    arrays["x_train"], arrays["x_test"] = pixels[:n_train], pixels[n_train : len(order)]
    return arrays


def _permute(pixels: np.ndarray, order: list[int]) -> None:
    """pixels[k] = old pixels[order[k]] for every k, in place, one image of scratch space
    (following each cycle of the permutation)."""
    done = bytearray(len(order))
    scratch = np.empty(pixels.shape[1:], pixels.dtype)
    for start in range(len(order)):
        if done[start]:
            continue
        scratch[...] = pixels[start]
        k = start
        while True:
            done[k] = 1
            j = order[k]
            if j == start:
                pixels[k] = scratch
                break
            pixels[k] = pixels[j]
            k = j
