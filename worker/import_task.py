"""The worker's side of a web import: read the uploaded file, register it, or say why not.

Leaves exactly one of: a registered data set (one transaction, in worker.datasets.register)
or an `import-<id>.error` artifact with the message. The upload artifact is always deleted.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import delete

from backend import models  # noqa: F401  (every table, so foreign keys resolve)
from backend.artifacts import service as artifacts_service
from backend.artifacts.models import Artifact, ArtifactChunk
from backend.db import session_scope
from backend.errors import InvalidRequest, NotFound
from worker import datasets
from worker.ml.data import DataError, load_dataset

log = logging.getLogger(__name__)
ERROR_KIND = "import-error"  # backend.datasets.imports reads these by kind and name
MAX_MESSAGE = 4000


def import_dataset(
    artifact_id: int, name: str, resize: bool = False, source: str | None = None
) -> str:
    """Import upload `artifact_id` (or download `source`='cifar10') as data set `name`."""
    tmp = ""
    try:
        with tempfile.TemporaryDirectory(prefix="stacklab-import-") as tmp:
            dataset = _load(artifact_id, Path(tmp), resize=resize, source=source)
            dataset_id = datasets.register(dataset, name=name)
    except NotFound:
        # a redelivered task whose upload was already handled: its outcome is recorded
        log.warning("import %s: the upload is gone, nothing to do", artifact_id)
        return "nothing to import"
    except Exception as err:
        message = _message(err, tmp)
        log.warning("import %s (%s) failed: %s", artifact_id, name, message)
        with session_scope() as session:
            _store_error(session, artifact_id, message)
            _delete(session, artifact_id)
        return f"failed: {message}"
    with session_scope() as session:
        _delete(session, artifact_id)
    return f"imported {name} as data set {dataset_id}"


def _load(artifact_id: int, tmp: Path, *, resize: bool, source: str | None):
    if source == "cifar10":
        return load_dataset("cifar10")
    if source is not None:
        raise DataError(f"unknown import source {source!r}")
    with session_scope() as session:
        artifact = artifacts_service.get_artifact(session, artifact_id)
        # "<name>/<original file name>": the suffix tells load_dataset which importer to use
        path = artifacts_service.write_to(session, artifact, tmp / artifact.name.rsplit("/", 1)[-1])
    return load_dataset(str(path), resize=resize)


def _message(err: Exception, tmp: str) -> str:
    if isinstance(err, InvalidRequest):
        text = err.reason
    elif isinstance(err, DataError | OSError):
        text = str(err)
    else:
        text = f"unexpected error ({type(err).__name__}): {err}"
    if tmp:  # the temp folder means nothing to the person who uploaded the file
        text = text.replace(f"{tmp}/", "").replace(tmp, "")
    return text[:MAX_MESSAGE] or type(err).__name__


def _store_error(session, artifact_id: int, message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "error.txt"
        path.write_text(message, encoding="utf-8")
        artifacts_service.store_file(
            session=session, path=path, name=f"import-{artifact_id}.error", kind=ERROR_KIND
        )


def _delete(session, artifact_id: int) -> None:
    session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id == artifact_id))
    session.execute(delete(Artifact).where(Artifact.id == artifact_id))
