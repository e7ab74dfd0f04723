"""Hostile uploads through real workers: each import fails with a plain message, the worker
process that took it lives on with its memory flat, nothing is left behind, and the name is
free again at once. A worker killed mid-import has its import failed by the upkeep."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.datasets import imports
from store.artifacts.models import Artifact
from store.datasets.models import DatasetImport, DatasetRecord
from store.db import session_scope
from tests.ml import hostile_corpus as corpus
from tests.ml.test_hostile_files import (
    inflating_zip,
    many_class_names_npz,
    many_members_tar,
    nested_labels_cifar,
    overlapping_zip,
)
from tests.ml.test_import_sandbox import label_bomb, slow_zip, small_npz
from tests.queue.test_queue import workers_online
from tests.stack import FAST, wait_for
from tests.stack import pool_children as children

pytestmark = pytest.mark.slow
MEMORY_MB = int(FAST["STACKLAB_IMPORT_MEMORY_MB"])
TIMEOUT_S = int(FAST["STACKLAB_IMPORT_TIMEOUT_SECONDS"])
# Growth of the worker process's peak resident memory that an import may cause: the old
# in-process parser reached 19 GB on the label bomb and 1.2 GB on the zeros.
MAX_WORKER_GROWTH_MB = 100
MAX_IMAGES = "(max_images, STACKLAB_IMPORT_MAX_IMAGES)"

CASES = {
    # The parsers refuse the label before building 2**40 class names (max_classes).
    "label-bomb": (label_bomb, "bomb.npz", False, "1,000 classes"),
    # Issue 19's first row: was registered (1.23 GB; the worker +1.18 GB, SQLite +2.4 GB);
    # before the output budgets the memory budget stopped it, 768 MiB into the parse.
    "zeros-bomb": (
        corpus.zeros_npz,
        "zeros.npz",
        False,
        f"x_train: 400,000 images, more than the 120,000 allowed {MAX_IMAGES}",
    ),
    # Issue 19's second row: 1,000 class names of 60,000 characters (was accepted; the data
    # set list then answered 240 MB).
    "long-class-names": (
        corpus.long_class_names_npz,
        "names.npz",
        False,
        "class_names holds strings of up to 60,000 characters; a class name may have 100",
    ),
    "too-slow": (
        slow_zip,
        "slow.zip",
        True,
        f"the import took longer than {TIMEOUT_S} s and was stopped "
        "(STACKLAB_IMPORT_TIMEOUT_SECONDS)",
    ),
}
# The parsers' other probes, uploaded too (on Redis + PostgreSQL only: the path is the same).
PARSER_CASES = {
    "nested-labels": (nested_labels_cifar, "cifar-10-python.tar.gz", False, "flat list"),
    "inflating-entry": (inflating_zip, "inflates.zip", False, "inflates to more than"),
    "many-members": (many_members_tar, "cifar-10-python.tar.gz", False, "members"),
    "overlapping-entries": (overlapping_zip, "overlap.zip", False, "overlap"),
    "many-class-names": (many_class_names_npz, "names.npz", False, "5,000 classes"),
    # issue 19: the rest of the output budgets, class names as text, plain messages
    "huge-labels": (
        corpus.big_labels_npz,
        "labels.npz",
        False,
        "y_train: decodes to 800,003,072 bytes of arrays, more than the 536,870,912 allowed "
        "(max_decoded_bytes, STACKLAB_IMPORT_MAX_DECODED_MB)",
    ),
    "long-name-summary": (
        corpus.many_short_names_npz,
        "names.npz",
        False,
        "class names add up to 90,000 characters, more than the 20,000 allowed",
    ),
    "nul-class-name": (
        corpus.bad_text_names_npz,
        "names.npz",
        False,
        "class_names (class 0): class name holds NUL",
    ),
    "non-utf8-class-names": (
        corpus.non_utf8_names_npz,
        "names.npz",
        False,
        "class_names (class 0) is not UTF-8 text",
    ),
    "non-utf8-cifar-labels": (
        corpus.non_utf8_label_names_cifar,
        "cifar-10-python.tar.gz",
        False,
        "batches.meta label_names (class 0): not UTF-8 text",
    ),
    "control-folder": (
        corpus.control_folder_zip,
        "folder.zip",
        False,
        "class name holds a control character (U+001B)",
    ),
    "junk-image": (corpus.junk_image_zip, "junk.zip", False, "9.png: not a decodable image"),
    "non-utf8-member": (
        corpus.non_utf8_name_zip,
        "member.zip",
        False,
        "a member name of the zip archive is not UTF-8",
    ),
}


def start(path: Path, name: str, *, resize: bool = False) -> int:
    with session_scope() as session:
        started = imports.start_import(
            session=session, path=path, name=name, filename=path.name, resize=resize
        )
    return started["import_id"]


def read(import_id: int) -> DatasetImport:
    with session_scope() as session:
        return session.get(DatasetImport, import_id)


def ended(import_id: int, timeout: float = 90) -> DatasetImport:
    return wait_for(
        lambda: (row := read(import_id)).state in ("done", "failed") and row,
        timeout=timeout,
        what=f"import {import_id} to end",
    )


def proc_status(pid: int, key: str) -> float:
    """A /proc/<pid>/status value in MiB (VmHWM: peak resident memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def is_parser(pid: int) -> bool:
    try:
        return b"worker.import_sandbox" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def celery_processes() -> list[int]:
    """Every Celery worker process on the machine (mains and pool children): whichever
    takes the import, even one a test before this started, has its peak noted first."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"worker.celery_app" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return found


def worker_pid(row: DatasetImport) -> int:
    return int(row.worker.rsplit(":", 1)[1])


def nothing_left(name: str, row: DatasetImport) -> None:
    with session_scope() as session:
        uploads = select(func.count()).where(
            Artifact.kind == "upload", Artifact.name.startswith(f"{name}/")
        )
        assert session.scalar(uploads) == 0 and row.upload_artifact_id is None
        assert session.scalar(select(DatasetRecord).where(DatasetRecord.name == name)) is None


def imports_again(name: str, tmp_path: Path) -> None:
    """The name is free: a good file under it imports at once."""
    again = ended(start(small_npz(tmp_path / "good.npz"), name), timeout=120)
    assert again.state == "done", again.message


@pytest.mark.parametrize("case", [*CASES, *PARSER_CASES])
def test_a_hostile_upload_fails_plainly_and_the_worker_lives_on(stack, tmp_path, case):
    if case not in ("zeros-bomb", "long-class-names") and stack["kind"] == "embedded":
        pytest.skip("run on Redis + PostgreSQL only, to keep the suite short")
    make, filename, resize, expected = {**CASES, **PARSER_CASES}[case]
    wait_for(lambda: workers_online() >= 2, timeout=120, what="two workers online")
    peak_before = {pid: proc_status(pid, "VmHWM") for pid in celery_processes()}
    name = f"hostile-{case}-{uuid.uuid4().hex[:6]}"

    row = ended(start(make(tmp_path / filename), name, resize=resize))

    assert row.state == "failed", row.message
    assert expected in row.message, row.message
    assert "object at 0x" not in row.message and "unexpected error" not in row.message
    pid = worker_pid(row)
    assert alive(pid), "the worker process that took the import died"
    # a pool child started after the snapshot (replacing one a test before killed) is
    # compared with the smallest peak seen: what a fresh child with TensorFlow holds
    growth = proc_status(pid, "VmHWM") - peak_before.get(pid, min(peak_before.values()))
    print(f"{case}: worker {pid} peak RSS {proc_status(pid, 'VmHWM'):.0f} MiB (+{growth:.0f})")
    assert growth < MAX_WORKER_GROWTH_MB
    assert not [c for c in children(pid) if is_parser(c)]  # the parser child is gone
    nothing_left(name, row)
    imports_again(name, tmp_path)


def test_an_import_whose_worker_is_killed_fails_and_frees_its_name(stack, tmp_path):
    wait_for(lambda: workers_online() >= 2, timeout=120, what="two workers online")
    name = f"killed-{uuid.uuid4().hex[:6]}"
    import_id = start(slow_zip(tmp_path / "slow.zip"), name, resize=True)
    row = wait_for(
        lambda: (r := read(import_id)).state == "running" and r, timeout=60, what="a worker on it"
    )
    pid = worker_pid(row)
    parser = wait_for(
        lambda: next((c for c in children(pid) if is_parser(c)), None),
        timeout=60,
        what="the parser child",
        every=0.05,
    )
    os.kill(pid, signal.SIGKILL)  # the OOM killer, a crash: no goodbye

    row = ended(import_id, timeout=60)
    assert row.state == "failed", row.message
    assert row.message.startswith("the worker stopped while importing"), row.message
    wait_for(lambda: not alive(parser), timeout=60, what="the parser to die with its worker")
    nothing_left(name, row)
    imports_again(name, tmp_path)
