"""Which images a run used, as compact sets that compare exactly (the pretraining leak check).

A set names the array of a data set its indices index (`Part`: its training or its test
images) and that array's size; it is kept as a bitmap (bit i: image i), zlib-compressed and
base64-encoded, so a set of CIFAR-10's 50,000 training images takes at most ~8.4 KB and
usually far less. Two sets of one array overlap in `overlap` images; sets of different
arrays never overlap. Decoding is bounded by the size the caller expects (the data set's):
nothing larger is ever inflated. Pure standard library: the worker writes these, the store
and the web read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# The most images one array may hold (a data set's import limit is far lower).
MAX_SIZE = 10_000_000


class Part(StrEnum):
    """Which array of a data set a set's indices index."""

    TRAIN = "train"
    TEST = "test"


class SetName(StrEnum):
    """The sets a run records: what it trained on, validated on and was tested on."""

    TRAIN = "train"
    VALIDATION = "validation"
    TEST = "test"


class ImageSetError(ValueError):
    """A stored set that cannot be read as one of the expected size."""


def _limit(size: int) -> int:
    """Bitmap bytes of an array of `size` images."""
    return (size + 7) // 8


def _digest(part: Part, size: int, bitmap: bytes) -> str:
    return hashlib.sha256(f"{part.value};{size};".encode() + bitmap).hexdigest()[:16]


@dataclass(frozen=True)
class ImageSet:
    """Images of one array (`part`, `size` images) as a bitmap; `digest` names the set."""

    part: Part
    size: int
    bitmap: bytes

    @classmethod
    def of(cls, part: Part, size: int, indices: Iterable[int]) -> ImageSet:
        """The set of these indices (each in [0, size))."""
        if not 0 <= size <= MAX_SIZE:
            raise ImageSetError(f"an image set's array holds 0..{MAX_SIZE:,} images, not {size}")
        bits = bytearray(_limit(size))
        for index in indices:
            i = int(index)
            if not 0 <= i < size:
                raise ImageSetError(f"index {i} is outside an array of {size} images")
            bits[i >> 3] |= 1 << (i & 7)
        return cls(part, size, bytes(bits))

    @property
    def count(self) -> int:
        return int.from_bytes(self.bitmap, "little").bit_count()

    @property
    def digest(self) -> str:
        """16 hex digits of SHA-256 over the part, the size and the bitmap."""
        return _digest(self.part, self.size, self.bitmap)

    def indices(self) -> list[int]:
        """The indices, ascending."""
        return [
            8 * at + j
            for at, byte in enumerate(self.bitmap)
            if byte
            for j in range(8)
            if byte >> j & 1
        ]

    def overlap(self, other: ImageSet) -> int:
        """How many images both sets hold (0 for sets of different arrays)."""
        if other.part != self.part:
            return 0
        if other.size != self.size:
            raise ImageSetError(
                f"sets of {self.size} and {other.size} {self.part.value} images are of "
                "different data sets"
            )
        mine = int.from_bytes(self.bitmap, "little")
        return (mine & int.from_bytes(other.bitmap, "little")).bit_count()

    def encode(self) -> dict[str, Any]:
        """JSON-able: part, size, count, digest and the compressed bitmap."""
        packed = base64.b64encode(zlib.compress(self.bitmap, 9)).decode("ascii")
        return {
            "part": self.part.value,
            "size": self.size,
            "count": self.count,
            "digest": self.digest,
            "bitmap": packed,
        }

    @classmethod
    def decode(cls, data: Mapping[str, Any], *, part: Part, size: int) -> ImageSet:
        """A stored set, which must be of `part` and of `size` images (the data set's):
        the bitmap is inflated to at most its expected length, count and digest checked."""
        if not isinstance(data, Mapping) or data.get("part") != part.value:
            raise ImageSetError(f"expected a set of {part.value} images")
        if data.get("size") != size or not 0 <= size <= MAX_SIZE:
            raise ImageSetError(f"expected a set of {size} images, got {data.get('size')!r}")
        expected = _limit(size)
        packed = data.get("bitmap")
        # zlib adds at most 5 bytes a 16 KiB block and a few bytes of header.
        if not isinstance(packed, str) or len(packed) > 4 * (expected + expected // 1000 + 64):
            raise ImageSetError("the bitmap is missing or longer than its set allows")
        try:
            inflater = zlib.decompressobj()
            bitmap = inflater.decompress(base64.b64decode(packed, validate=True), expected + 1)
        except (binascii.Error, zlib.error) as err:
            raise ImageSetError(f"the bitmap cannot be read: {err}") from None
        if len(bitmap) != expected or inflater.unconsumed_tail or not inflater.eof:
            raise ImageSetError(f"the bitmap is not {expected} bytes")
        if size % 8 and bitmap[-1] >> (size % 8):
            raise ImageSetError(f"the bitmap names images past {size}")
        found = cls(part, size, bitmap)
        if data.get("count") != found.count or data.get("digest") != found.digest:
            raise ImageSetError("the set's count or digest does not match its bitmap")
        return found
