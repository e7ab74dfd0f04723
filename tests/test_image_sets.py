"""Image sets (jobspec/image_sets.py): exact overlaps, a compact encoding, bounded decoding."""

from __future__ import annotations

import base64
import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobspec.image_sets import ImageSet, ImageSetError, Part

SIZE = 50_000


@given(
    st.sets(st.integers(0, 999), max_size=300),
    st.sets(st.integers(0, 999), max_size=300),
    st.sampled_from([1000, 1003]),
)
def test_the_overlap_is_the_intersection_of_the_index_sets(a, b, size):
    one, two = ImageSet.of(Part.TRAIN, size, a), ImageSet.of(Part.TRAIN, size, b)
    assert one.overlap(two) == len(a & b)
    assert one.count == len(a) and one.indices() == sorted(a)
    again = ImageSet.decode(one.encode(), part=Part.TRAIN, size=size)
    assert again == one and again.digest == one.digest


def test_sets_of_other_arrays_never_overlap_and_other_sizes_are_refused():
    train = ImageSet.of(Part.TRAIN, 10, [1, 2])
    assert train.overlap(ImageSet.of(Part.TEST, 10, [1, 2])) == 0
    with pytest.raises(ImageSetError, match="different data sets"):
        train.overlap(ImageSet.of(Part.TRAIN, 11, [1, 2]))
    with pytest.raises(ImageSetError, match="outside"):
        ImageSet.of(Part.TRAIN, 10, [10])


def test_a_cifar_sized_validation_set_is_stored_in_a_few_kilobytes():
    chosen = random.Random(0).sample(range(SIZE), 5000)  # 10% validation of 50,000 images
    encoded = ImageSet.of(Part.TRAIN, SIZE, chosen).encode()
    assert len(encoded["bitmap"]) < 6250 * 4 / 3 + 100  # never more than the raw bitmap
    assert len(ImageSet.of(Part.TEST, 10_000, range(10_000)).encode()["bitmap"]) < 100


def _tampered(**changes):
    data = ImageSet.of(Part.TRAIN, 16, [0, 3]).encode()
    return {**data, **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_tampered(size=17), "expected a set of 16"),
        (_tampered(part="test"), "expected a set of train"),
        (_tampered(count=3), "does not match"),
        (_tampered(bitmap="not base64!"), "cannot be read"),
        # a bomb: 1 MB of zeros claimed for a 16-image array is never inflated whole
        (_tampered(bitmap=base64.b64encode(zlib.compress(bytes(10**6))).decode()), "longer"),
        (_tampered(bitmap=base64.b64encode(zlib.compress(bytes(3))).decode()), "not 2 bytes"),
    ],
)
def test_a_stored_set_is_read_only_at_its_data_sets_size(data, message):
    with pytest.raises(ImageSetError, match=message):
        ImageSet.decode(data, part=Part.TRAIN, size=16)


def test_bits_past_the_arrays_end_are_refused():
    data = ImageSet(Part.TRAIN, 12, bytes([0, 0b1000_0000])).encode()
    with pytest.raises(ImageSetError, match="past 12"):
        ImageSet.decode(data, part=Part.TRAIN, size=12)
