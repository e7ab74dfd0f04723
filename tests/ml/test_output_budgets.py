"""What an import decodes to is bounded (images, decoded bytes, class names; per import and
per store), refused before it is allocated with the setting named, and the parse child's
result reaches the store without the worker ever holding it (issue 19)."""

from __future__ import annotations

import os
import tracemalloc
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact
from store.datasets import lifecycle
from store.datasets import service as datasets_service
from store.datasets.models import DatasetImport, DatasetRecord
from store.db import session_scope
from store.errors import InvalidRequest
from store.settings import get_settings
from tests.ml import hostile_corpus as corpus
from tests.ml.test_hostile_files import assert_refused_cheaply, cifar_tar, tree, write_zip
from tests.ml.test_import_sandbox import small_npz
from tests.stack import stack_env
from worker import import_task
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.limits import MIB, ImportLimits
from worker.ml.datasets.load import load_dataset
from worker.ml.datasets.npz import check_saved

SMALL = ImportLimits(max_images=20, max_decoded_bytes=1 * MIB)


# --- per import: refused from headers and counts, naming the setting ----------------------


def test_a_1_mb_npz_declaring_400k_images_is_refused_from_its_header(tmp_path):
    path = corpus.zeros_npz(tmp_path / "zeros.npz")
    assert path.stat().st_size < 2_000_000
    # was: 1.23 GB read in the parse child, then again in the worker, then stored
    assert_refused_cheaply(
        path, "x_train: 400,000 images, more than the 120,000 allowed", max_mb=50
    )
    with pytest.raises(DataError, match=r"\(max_images, STACKLAB_IMPORT_MAX_IMAGES\)"):
        load_dataset(str(path))


def test_labels_that_decode_past_the_byte_budget_are_refused_from_their_header(tmp_path):
    path = corpus.big_labels_npz(tmp_path / "labels.npz")
    assert_refused_cheaply(path, "y_train: decodes to 800,003,072 bytes", max_mb=50)
    with pytest.raises(DataError, match=r"STACKLAB_IMPORT_MAX_DECODED_MB"):
        load_dataset(str(path))


def test_float_pixels_are_refused_from_the_header_with_the_conversion_hint(tmp_path):
    path = corpus.float_pixels_npz(tmp_path / "floats.npz")
    assert_refused_cheaply(path, "x_train has dtype float64; expected uint8", max_mb=50)


def test_image_folders_and_cifar_batches_count_images_as_they_decode(tmp_path):
    limits = ImportLimits(max_images=5)
    with pytest.raises(DataError, match=r"6 images, more than the 5 allowed \(max_images, STA"):
        load_dataset(str(write_zip(tmp_path / "pets.zip", tree(("a", "b", "c")))), limits=limits)
    path = corpus.many_images_cifar(tmp_path / "cifar-10-python.tar.gz", per_batch=10)
    with pytest.raises(DataError, match=r"data_batch_2: 20 images, more than the 15 allowed"):
        load_dataset(str(path), limits=ImportLimits(max_images=15))
    with pytest.raises(DataError, match=r"test_batch: decodes to 184,800 bytes of arrays, more"):
        load_dataset(str(path), limits=ImportLimits(max_decoded_bytes=180_000))
    assert load_dataset(str(path), limits=ImportLimits(max_images=60)).x_train.shape[0] == 50


def test_cifar_pickles_too_big_to_decode_within_the_budget_are_not_read(tmp_path):
    path = cifar_tar(tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match=r"data files take more than 11,250 bytes.*DECODED_MB"):
        load_dataset(str(path), limits=ImportLimits(max_decoded_bytes=10_000))


# --- class names: valid text, short, a bounded summary -------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (corpus.long_class_names_npz, "class_names holds strings of up to 60,000 characters"),
        (corpus.many_short_names_npz, "class names add up to 90,000 characters"),
        (corpus.bad_text_names_npz, "class_names (class 0): class name holds NUL"),
        (
            lambda p: corpus.bad_text_names_npz(p, "\udcff"),
            "class_names (class 0): class name holds a lone surrogate",
        ),
        (corpus.non_utf8_names_npz, "class_names (class 0) is not UTF-8 text"),
        (corpus.non_utf8_label_names_cifar, "batches.meta label_names (class 0): not UTF-8"),
        (corpus.control_folder_zip, "train/ca\ufffdt/: class name holds a control character"),
    ],
)
def test_class_names_from_files_follow_the_text_rules(tmp_path, make, message):
    names = {
        corpus.non_utf8_label_names_cifar: "cifar-10-python.tar.gz",
        corpus.control_folder_zip: "folder.zip",
    }
    path = make(tmp_path / names.get(make, "names.npz"))
    with pytest.raises(DataError) as caught:
        load_dataset(str(path))
    said = str(caught.value)
    assert said.startswith(str(path)) and message in said, said
    said.encode("utf-8")  # never the bad character itself: the message can be stored
    assert "\x00" not in said and "\x1b" not in said


def test_a_60000_character_class_name_npz_is_refused_cheaply(tmp_path):
    path = corpus.long_class_names_npz(tmp_path / "names.npz")
    assert path.stat().st_size < 400_000  # the 240 KB file
    assert_refused_cheaply(path, "class_names holds strings of up to 60,000", max_mb=50)


# --- clear messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "filename", "message"),
    [
        (corpus.junk_image_zip, "junk.zip", "train/cat/9.png: not a decodable image"),
        (corpus.truncated_png_zip, "cut.zip", "train/cat/9.png: not a decodable image"),
        (corpus.non_utf8_name_zip, "names.zip", "a member name of the zip archive is not UTF-8"),
    ],
)
def test_decode_errors_name_the_member_never_a_python_object(tmp_path, make, filename, message):
    with pytest.raises(DataError) as caught:
        load_dataset(str(make(tmp_path / filename)))
    said = str(caught.value)
    assert message in said and "object at 0x" not in said and "BytesIO" not in said, said


# --- the summary the child hands back is checked against the file, headers only ------------


def test_the_saved_summary_must_match_the_arrays_headers(tmp_path):
    dataset = load_dataset(str(small_npz(tmp_path / "ok.npz")))
    saved = dataset.save(tmp_path / "result.npz")
    summary = dataset.summary()
    assert check_saved(saved, summary) is summary
    for lie in (
        {"n_train": 13},
        {"class_names": ["0", "1", "x\x00"]},
        {"train_counts": {"0": 5, "1": 5, "2": 5}},
        {"source": "s" * 41},
        {"image_shape": [64, 64, 3]},
    ):
        with pytest.raises(DataError):
            check_saved(saved, summary | lie)


# --- through the worker's import task: the store's budget, and the worker's memory ---------


@pytest.fixture
def store(tmp_path):
    with stack_env({"STACKLAB_DATA_DIR": str(tmp_path / "data")}):
        from store.db import upgrade_schema

        upgrade_schema()
        yield


def queue_import(path: Path, name: str | None = None) -> int:
    name = name or f"budget-{uuid.uuid4().hex[:6]}"
    with session_scope() as session:
        upload = artifacts_service.store_file(
            session=session, path=path, name=f"{name}/{path.name}", kind="upload"
        )
        return lifecycle.create(
            session=session, name=name, file_name=path.name, upload_artifact_id=upload.id
        ).id


def imported(import_id: int) -> DatasetImport:
    outcome = import_task.import_dataset(import_id)
    with session_scope() as session:
        row = session.get(DatasetImport, import_id)
        assert row is not None
        print(f"import {import_id}: {outcome}")
        return row


def dataset_rows() -> int:
    with session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(DatasetRecord)) or 0)


def test_the_store_budget_refuses_an_import_that_would_pass_it(store, tmp_path, monkeypatch):
    first = imported(queue_import(small_npz(tmp_path / "a.npz")))
    assert first.state == "done", first.message
    with session_scope() as session:
        used = datasets_service.stored_bytes(session)
    assert used > 40_000
    monkeypatch.setenv("STACKLAB_MAX_DATASET_STORE_MB", "1")
    get_settings.cache_clear()
    bigger = corpus.zeros_npz(tmp_path / "b.npz", images=400)  # 1.2 MB of arrays
    row = imported(queue_import(bigger))
    assert row.state == "failed"
    assert "no room for this data set" in row.message, row.message
    assert "(STACKLAB_MAX_DATASET_STORE_MB)" in row.message
    assert dataset_rows() == 1
    # the store full: what import_task checks before parsing
    with session_scope() as session, pytest.raises(InvalidRequest, match="DATASET_STORE_MB"):
        datasets_service.check_room(session, 1, used)


def proc_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise AssertionError(key)


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux: clear_refs 5)."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
    except OSError:
        return False
    return proc_kib("VmHWM") <= proc_kib("VmRSS") + 1024


def test_a_near_budget_import_never_passes_through_the_worker_memory(store, tmp_path):
    """110,000 images (338 MB of arrays) imported by the worker's task: the worker used to
    load the child's result back whole (+338 MB here, +1.18 GB for the issue's 400,000);
    now it reads the summary and the headers, and the store copies the file in chunks."""
    path = corpus.zeros_npz(tmp_path / "near.npz", images=110_000)
    import_id = queue_import(path)
    peak_reset = reset_peak()
    rss_before = proc_kib("VmRSS")
    tracemalloc.start()
    try:
        row = imported(import_id)
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert row.state == "done", row.message
    size = 110_000 * (3072 + 8)
    with session_scope() as session:
        record = session.get(DatasetRecord, row.dataset_id)
        assert record is not None and record.n_train == 110_000
        stored = session.scalar(select(Artifact.size).where(Artifact.dataset_id == record.id))
    assert stored is not None and stored > size
    grew_mb = (proc_kib("VmHWM") - rss_before) / 1024
    print(f"worker: traced peak {traced_peak / MIB:.1f} MiB, peak RSS growth {grew_mb:.0f} MiB")
    assert traced_peak < 32 * MIB  # the data set is 338 MB
    if peak_reset:
        assert grew_mb < 100


def test_limits_come_from_the_settings(monkeypatch):
    monkeypatch.setenv("STACKLAB_IMPORT_MAX_IMAGES", "7")
    monkeypatch.setenv("STACKLAB_IMPORT_MAX_DECODED_MB", "3")
    monkeypatch.setenv("STACKLAB_MAX_CLASSES", "9")
    get_settings.cache_clear()
    try:
        limits = import_task._limits(get_settings())
    finally:
        get_settings.cache_clear()
    assert (limits.max_images, limits.max_decoded_bytes, limits.max_classes) == (7, 3 * MIB, 9)
    assert np.iinfo(np.int64).max > limits.max_decoded_bytes
