"""How fast legitimate files import: the timings the import tests once asserted.

Three figures, each the median of --repeats in this process:
  cifar_batch_unpickle   safe_unpickle of one real-sized CIFAR-10 batch (10,000 rows, the
                         official protocol-2 layout); the tests asserted < 3 s (0.5 s here)
  jpeg_subset_import     import_image_folder of ../shared/data/cifar10-jpeg-subset.zip
                         (12,000 JPEGs; skipped when the file is absent); asserted < 15 s
  huge_header_refusal    load_dataset refusing a PNG whose header says 100,000 x 100,000
                         pixels; asserted < 2 s

    python bench/import_speed.py [--repeats 3]

The tests check what these imports do (tests/ml/test_importers.py, test_hostile_files.py);
how long they take depends on the machine and its load, so it is measured here.
Last line of stdout: one JSON object with the figures in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import statistics
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from worker.ml.datasets.dataset import DataError  # noqa: E402
from worker.ml.datasets.image_folder import import_image_folder  # noqa: E402
from worker.ml.datasets.limits import ImportLimits  # noqa: E402
from worker.ml.datasets.load import load_dataset  # noqa: E402
from worker.ml.datasets.pickle_safety import safe_unpickle  # noqa: E402

SUBSET_ZIP = Path(__file__).resolve().parents[2] / "shared/data/cifar10-jpeg-subset.zip"


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """The median wall time of `repeats` calls of action()."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cifar_batch(n: int = 10_000) -> bytes:
    """A pickled batch in the official layout (as tests/ml/test_hostile_files.py makes it)."""
    rng = np.random.default_rng(0)
    batch = {
        b"batch_label": b"bench batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    return pickle.dumps(batch, protocol=2)


def huge_header_zip(path: Path) -> Path:
    """An image folder whose one PNG claims 100,000 x 100,000 pixels in its header."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="PNG")
    big = bytearray(buffer.getvalue())
    ihdr = big.index(b"IHDR")
    big[ihdr + 4 : ihdr + 12] = struct.pack(">2L", 100_000, 100_000)
    big[ihdr + 17 : ihdr + 21] = struct.pack(">L", zlib.crc32(bytes(big[ihdr : ihdr + 17])))
    small = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "test"):
            for label in ("cat", "dog"):
                archive.writestr(f"{split}/{label}/0.png", small)
        archive.writestr("train/cat/9.png", bytes(big))
    return path


def refuse(path: Path) -> None:
    """Our own pixel cap refuses it, with PIL's check off (as the test has it)."""
    kept, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        load_dataset(str(path), resize=True)
    except DataError as err:
        assert "image is 100000x100000" in str(err), err
        return
    finally:
        Image.MAX_IMAGE_PIXELS = kept
    raise AssertionError("the huge header was not refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, object] = {"bench": "import_speed", "repeats": args.repeats}
    data = cifar_batch()
    figures["cifar_batch_unpickle"] = median_seconds(
        lambda: safe_unpickle(data, "data_batch_1", ImportLimits()), args.repeats
    )
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        wide = huge_header_zip(Path(tmp) / "wide.zip")
        figures["huge_header_refusal"] = median_seconds(lambda: refuse(wide), args.repeats)
    if SUBSET_ZIP.is_file():
        figures["jpeg_subset_import"] = median_seconds(
            lambda: import_image_folder(SUBSET_ZIP), args.repeats
        )
    else:
        figures["jpeg_subset_import"] = None
    for key, value in figures.items():
        if isinstance(value, float):
            print(f"{key:24} {value:.3f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
