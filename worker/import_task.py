"""The worker's side of a web import: claim it, parse the file in a child under budgets,
register the data set, or say why not.

The import's row (store.datasets.lifecycle) ends done, with the data set registered in the
same transaction, or failed with a message; the upload is deleted either way. The parse runs
in a spawned child (worker.import_sandbox) so an upload that needs too much memory or time
fails only that child; this process beats the row's heartbeat meanwhile. The child hands
back the data set's summary and its arrays file; this process (no memory budget) never
loads the arrays: the store copies the file a chunk at a time.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from store import models  # noqa: F401  (every table, so foreign keys resolve)
from store.artifacts import service as artifacts_service
from store.datasets import lifecycle
from store.datasets import service as datasets_service
from store.db import session_scope
from store.errors import InvalidRequest, NotFound
from store.faults import classify, describe
from store.settings import Settings, get_settings
from worker import device, import_sandbox, liveness
from worker.ml.datasets.dataset import DataError
from worker.ml.datasets.limits import MIB, ImportLimits
from worker.runner import retrying

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What the claimed row says to import."""

    import_id: int
    name: str
    file_name: str
    resize: bool
    source: str | None
    upload_id: int | None


class WorkerStopping(Exception):
    """This worker was told to stop (SIGTERM): the import goes back to the queue."""


def import_dataset(import_id: int, *_legacy: object) -> str:
    """Import `import_id` (a queued dataset_imports row). Older messages carried the name,
    resize and source too: the row is what counts."""
    if liveness.DRAINING.is_set():
        liveness.refuse_new_work()
        raise WorkerStopping(f"not taking import {import_id}: this worker is stopping")
    worker = device.worker_name()
    with session_scope() as session:
        row = lifecycle.claim(session=session, import_id=import_id, worker=worker)
        if row is None:  # redelivered, sent twice, or reaped: someone else has its outcome
            log.warning("import %s: not queued any more, nothing to do", import_id)
            return "nothing to import"
        job = Job(row.id, row.name, row.file_name, row.resize, row.source, row.upload_artifact_id)
    settings = get_settings()
    tmp = ""
    try:
        with (
            liveness.hand_back_on_sigterm(),
            Heartbeat(import_id, worker, settings.heartbeat_seconds) as beats,
            tempfile.TemporaryDirectory(prefix="stacklab-import-") as tmp,
        ):
            parsed = _parse(job, Path(tmp), settings, beats)
            dataset_id = _store(job, worker, parsed, settings)
    except lifecycle.ImportSuperseded as err:
        log.warning("import %s (%s) given up: %s", import_id, job.name, err)
        return f"given up: {err}"
    except WorkerStopping:
        with session_scope() as session:
            lifecycle.hand_back(session=session, import_id=import_id, worker=worker)
        log.warning("import %s (%s) handed back: this worker is stopping", import_id, job.name)
        return "handed back: this worker is stopping"
    except Exception as err:
        message = _message(err, tmp)
        log.warning("import %s (%s) failed: %s", import_id, job.name, message)
        _record_failure(import_id, worker, message, settings)
        return f"failed: {message}"
    return f"imported {job.name} as data set {dataset_id}"


def _parse(job: Job, tmp: Path, settings: Settings, beats: Heartbeat) -> import_sandbox.Parsed:
    """The data set's summary and arrays file, parsed in a child under the memory and time
    budgets."""
    timeout = settings.import_timeout_seconds
    if job.source == "cifar10":
        # Keras downloads a fixed, hash-checked file and imports TensorFlow, whose address
        # space reservations make RLIMIT_AS meaningless: a child with a time budget only.
        spec, budget = "cifar10", import_sandbox.Budget(None, timeout)
    elif job.source is not None:
        raise DataError(f"unknown import source {job.source!r}")
    else:
        with session_scope() as session:  # a full store fails before any parsing
            datasets_service.check_room(session, 1, settings.max_dataset_store_mb * MIB)
        spec = str(_write_upload(job, tmp))
        budget = import_sandbox.Budget(settings.import_memory_mb, timeout)
    parsed = import_sandbox.parse_in_child(
        spec,
        work_dir=tmp / "parsed",
        budget=budget,
        resize=job.resize,
        limits=_limits(settings),
        beat=beats.check,
        beat_every=min(1.0, settings.heartbeat_seconds),
    )
    log.info(
        "import %s parsed: peak %.0f MiB resident, %.0f MiB address space (budget %s MiB)",
        job.import_id,
        parsed.peak_rss_mb,
        parsed.peak_vm_mb,
        budget.memory_mb,
    )
    classes = parsed.summary["num_classes"]
    if classes > settings.max_classes:
        raise DataError(
            f"{job.file_name}: {classes:,} classes, more than the limit of "
            f"{settings.max_classes:,} (STACKLAB_MAX_CLASSES)"
        )
    return parsed


def _write_upload(job: Job, tmp: Path) -> Path:
    """The uploaded file on local disk, under its own name (the suffix picks the importer)."""
    if job.upload_id is None:
        raise DataError("the uploaded file is gone; upload it again")
    with session_scope() as session:
        artifact = artifacts_service.get_artifact(session, job.upload_id)
        return artifacts_service.write_to(session, artifact, tmp / Path(job.file_name).name)


def _limits(settings: Settings) -> ImportLimits:
    """The parsers' limits, with this deployment's settings (ImportLimits' other fields are
    fixed budgets of the readers)."""
    return ImportLimits(
        max_classes=settings.max_classes,
        max_images=settings.import_max_images,
        max_decoded_bytes=settings.import_max_decoded_mb * MIB,
    )


def _store(job: Job, worker: str, parsed: import_sandbox.Parsed, settings: Settings) -> int:
    """Register the data set and mark the import done, in one transaction."""
    with session_scope() as session:
        record = datasets_service.register(
            session=session,
            name=job.name,
            summary=parsed.summary,
            arrays=parsed.arrays,
            max_store_bytes=settings.max_dataset_store_mb * MIB,
        )
        lifecycle.finish(
            session=session, import_id=job.import_id, worker=worker, dataset_id=record.id
        )
        return record.id


def _record_failure(import_id: int, worker: str, message: str, settings: Settings) -> None:
    """Fail the import saying why, retried through a store that is away or cannot write (a
    full disk): the small record lands once writes come back, well inside the stale window
    the reapers wait after their own write probe passes again, so the import is never
    recorded as "the worker stopped"."""

    def record() -> None:
        with session_scope() as session:
            lifecycle.fail(session=session, import_id=import_id, message=message, worker=worker)

    pace = max(0.05, min(15.0, settings.stale_after_seconds / 4))
    retrying(
        record,
        what=f"recording import {import_id}'s failure",
        through=lambda err: classify(err) is not None,
        max_delay=pace,
    )


def _message(err: Exception, tmp: str) -> str:
    if (fault := classify(err)) is not None and not fault.transient:
        return f"the store refused a write: {describe(err)}"[: lifecycle.MAX_MESSAGE]
    if isinstance(err, InvalidRequest):
        text = err.reason
    elif isinstance(err, NotFound):
        text = "the uploaded file is gone; upload it again"
    elif isinstance(err, DataError | OSError | import_sandbox.ImportFailed):
        text = str(err)
    else:
        text = f"unexpected error ({type(err).__name__}): {err}"
    if tmp:  # the temp folder means nothing to the person who uploaded the file
        for folder in (f"{tmp}/parsed", tmp):
            text = text.replace(f"{folder}/", "").replace(folder, "")
    return text[: lifecycle.MAX_MESSAGE] or type(err).__name__


class Heartbeat:
    """Beats the import's heartbeat from a thread while it runs (parse, write, store), so
    a long step never looks like a dead worker; check() raises once it is no longer ours."""

    def __init__(self, import_id: int, worker: str, every: float):
        self.import_id, self.worker, self.every = import_id, worker, every
        self.stop, self.lost = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._loop, name="import-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()

    def check(self) -> None:
        """Called while the parser runs: stop it when the import is not ours any more, or
        when this worker was told to stop (the import then goes back to the queue)."""
        if self.lost.is_set():
            raise lifecycle.ImportSuperseded(f"import {self.import_id} was failed by the upkeep")
        if liveness.DRAINING.is_set():
            raise WorkerStopping(f"import {self.import_id}: this worker is stopping")

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            try:
                with session_scope() as session:
                    lifecycle.beat(session=session, import_id=self.import_id, worker=self.worker)
            except lifecycle.ImportSuperseded:
                self.lost.set()
                return
            except Exception as err:  # a store blip: the next beat may land
                log.warning("import %s: heartbeat failed (%s)", self.import_id, err)
