"""Data set imports from the web: stream an upload to disk, store it, queue the worker's task.

The web never parses the data itself: the worker's `stacklab.import_dataset` task does. An
import is a `dataset_imports` row (store.datasets.lifecycle): queued here with its upload,
claimed and finished (done or failed, with the message) by a worker, or failed by the
upkeep when its worker dies. Its name is taken while it is queued or running.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from fastapi import HTTPException, Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from backend.runs import liveness, panel_imports
from jobspec import text
from jobspec.status import ImportPhase, ImportState
from store import clock, queue
from store.artifacts import service as artifacts_service
from store.artifacts.models import Artifact, ArtifactChunk
from store.datasets import lifecycle
from store.datasets.models import DatasetImport, DatasetRecord
from store.db import session_scope
from store.errors import InvalidRequest, NotFound
from store.settings import get_settings
from store.timeutil import aware
from store.workers import service as workers_service

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

UPLOAD_KIND = "upload"
ACCEPTED_SUFFIXES = (".npz", ".zip", ".tar.gz", ".tgz", ".tar")
MAX_UPLOAD_BYTES = 1 << 30  # CIFAR-10's archive is 163 MiB; the worker refuses > 2 GiB expanded
MAX_FIELD_BYTES = 1024
MAX_PART_HEADERS = 8  # header lines of one part (python-multipart's default; we send 2)
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")


def check_name_syntax(name: str | None) -> str:
    """A data set name: 1..100 letters, digits, '-', '_' or '.'."""
    if not name or not NAME_RE.fullmatch(name) or name.strip(".") == "":
        # "." and ".." would read as the current and parent folder in paths and URLs.
        raise InvalidRequest(
            "name", "use 1 to 100 letters, digits, '-', '_' or '.' (not only dots)"
        )
    return name


def check_name(session: Session, name: str | None) -> str:
    """A valid name that no data set and no import in progress uses."""
    name = check_name_syntax(name)
    # Names differing only in case name the same data set (text.fold; names are ASCII).
    same = func.lower(DatasetRecord.name) == text.fold(name)
    if (taken := session.scalar(select(DatasetRecord.name).where(same))) is not None:
        raise InvalidRequest("name", f"a data set named {taken!r} exists already")
    if lifecycle.active_with_name(session, name) is not None:
        raise InvalidRequest("name", f"an import named {name!r} is in progress")
    return name


def safe_filename(filename: str | None) -> str:
    """The upload's base name, kept for its suffix (the worker picks the importer by it)."""
    base = PurePosixPath((filename or "").replace("\\", "/")).name
    if not base.lower().endswith(ACCEPTED_SUFFIXES):
        raise InvalidRequest(
            "file", "upload a .npz file, an image-folder .zip or cifar-10-python.tar.gz"
        )
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[-150:]


@dataclass
class Received:
    """A multipart body taken apart: small fields in memory, the file on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0


def _too_many_parts(limit: int) -> HTTPException:
    return HTTPException(413, f"the form has more than {limit} parts (STACKLAB_MAX_FORM_PARTS)")


class _Parts:
    """python-multipart callbacks: the file part goes to disk, fields stay small.

    Parts are counted (STACKLAB_MAX_FORM_PARTS) as they begin, so a flood of tiny fields is
    refused at the first one too many; the parser caps each part's header lines
    (MAX_PART_HEADERS, STACKLAB_MAX_PART_HEADER_KB each), which are gathered piece by piece.
    """

    def __init__(self, dest_dir: Path, limit: int, max_parts: int = 16):
        self.out, self.limit, self.dest_dir = Received(), limit, dest_dir
        self.max_parts, self.parts = max_parts, 0
        self.headers: dict[bytes, bytes] = {}
        self._field, self._value = bytearray(), bytearray()
        self.name: str | None = None
        self.buffer = bytearray()
        self.pending: list[bytes] = []  # file bytes, written after each parser step
        self.fh: IO[bytes] | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self.parts += 1
        if self.parts > self.max_parts:
            raise _too_many_parts(self.max_parts)
        self.headers, self.name, self.buffer = {}, None, bytearray()

    def _header_end(self) -> None:
        self.headers[bytes(self._field).lower()] = bytes(self._value)
        self._field, self._value = bytearray(), bytearray()

    def _headers_done(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            return
        if self.name != "file" or self.fh is not None:
            raise InvalidRequest("file", "send exactly one file, in the field 'file'")
        self.out.filename = safe_filename(options[b"filename"].decode("utf-8", "replace"))
        fd, tmp = tempfile.mkstemp(dir=self.dest_dir, prefix="upload-", suffix=".part")
        self.fh, self.out.path = os.fdopen(fd, "wb"), Path(tmp)

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self.name == "file" and self.fh is not None:
            self.out.size += end - start
            if self.out.size > self.limit:
                raise HTTPException(413, f"the file is larger than {self.limit >> 20} MiB")
            self.pending.append(bytes(data[start:end]))
            return
        self.buffer += data[start:end]
        if len(self.buffer) > MAX_FIELD_BYTES:
            raise InvalidRequest(self.name or "form", "form field too long")

    def _end(self) -> None:
        if self.name and self.name != "file":
            value = self.buffer.decode("utf-8", "replace")
            if self.name == "name":
                check_name_syntax(value)  # refuse a bad name before the file is read
            self.out.fields[self.name] = value

    def flush(self) -> None:
        if self.pending and self.fh is not None:
            self.fh.write(b"".join(self.pending))
        self.pending = []


async def receive(request: Request, *, dest_dir: Path, limit: int | None = None) -> Received:
    """Stream a multipart body to a temp file, chunk by chunk, refusing it past `limit`."""
    limit = limit or MAX_UPLOAD_BYTES
    ctype, options = parse_options_header(request.headers.get("content-type"))
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise InvalidRequest("file", "send the file as multipart/form-data")
    declared = request.headers.get("content-length") or "0"
    if not (declared.isascii() and declared.isdigit()):
        raise InvalidRequest("file", "the Content-Length header is not a number")
    if len(declared) > 12 or int(declared) > limit + 64 * 1024:  # digits first: no huge int()
        raise HTTPException(413, f"the file is larger than {limit >> 20} MiB")
    dest_dir.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    parts = _Parts(dest_dir, limit, settings.max_form_parts)
    header_kb = settings.max_part_header_kb
    parser = MultipartParser(
        options[b"boundary"],
        parts.callbacks(),
        max_header_count=MAX_PART_HEADERS,
        max_header_size=header_kb * 1024,
    )
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if parts.pending:
                    await run_in_threadpool(parts.flush)
            parser.finalize()
            await run_in_threadpool(parts.flush)
        except MultipartParseError as err:
            raise _refusal(err, header_kb) from err
    except BaseException:
        if parts.out.path:
            parts.out.path.unlink(missing_ok=True)
        raise
    finally:
        if parts.fh is not None:
            parts.fh.close()
    if parts.out.path is None:
        raise InvalidRequest("file", "no file was sent")
    return parts.out


def _refusal(err: MultipartParseError, header_kb: int) -> HTTPException | InvalidRequest:
    """413 naming the limit a part's headers went past, else 422 for a malformed body."""
    if "header size" in str(err):
        message = f"a part's header line is longer than {header_kb} KiB"
        return HTTPException(413, f"{message} (STACKLAB_MAX_PART_HEADER_KB)")
    if "header count" in str(err):
        return HTTPException(413, f"a part has more than {MAX_PART_HEADERS} header lines")
    return InvalidRequest("file", f"malformed multipart body ({err})")


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "on", "yes")


async def handle_upload(request: Request, *, name: str | None, resize: bool) -> dict:
    """Validate the name, stream the file in, store it and queue its import (202)."""
    if name is not None:
        await run_in_threadpool(_check_name_in_db, name)
    dest = get_settings().data_dir / "uploads"
    received = await receive(request, dest_dir=dest)
    path, filename = received.path, received.filename
    if path is None or filename is None:  # receive() refuses a body without its file
        raise InvalidRequest("file", "no file was sent")
    try:
        name = name if name is not None else received.fields.get("name")
        resize = resize or _truthy(received.fields.get("resize"))
        return await run_in_threadpool(_store_and_queue, path, name, filename, resize)
    finally:
        path.unlink(missing_ok=True)


def _check_name_in_db(name: str) -> None:
    with session_scope() as session:
        check_name(session, name)


def _store_and_queue(path: Path, name: str | None, filename: str, resize: bool) -> dict:
    with session_scope() as session:
        return start_import(session=session, path=path, name=name, filename=filename, resize=resize)


def start_import(
    *,
    session: Session,
    path: Path,
    name: str | None,
    filename: str,
    resize: bool = False,
    source: str | None = None,
) -> dict:
    """Store the file as an upload artifact and a queued import, commit, then send its task."""
    name = check_name(session, name)
    artifact = artifacts_service.store_file(
        session=session, path=path, name=f"{name}/{filename}", kind=UPLOAD_KIND
    )
    try:
        row = lifecycle.create(
            session=session,
            name=name,
            file_name=filename,
            upload_artifact_id=artifact.id,
            resize=resize,
            source=source,
        )
    except IntegrityError as err:  # another upload took the name a moment ago
        raise InvalidRequest("name", f"an import named {name!r} is in progress") from err
    import_id = row.id
    session.commit()  # the worker must find the import when the task arrives
    try:
        queue.enqueue(queue.IMPORT, import_id)
    except Exception as err:  # broker down: nothing is left behind
        session.execute(delete(DatasetImport).where(DatasetImport.id == import_id))
        _delete_artifact(session, artifact.id)
        session.commit()
        raise HTTPException(503, f"could not reach the job queue: {err}") from err
    pending = ImportPhase.PENDING
    queued = panel_imports.row_of(session, import_id, clock.now(session))  # its place, words
    return {
        "import_id": import_id,
        "name": name,
        "state": pending,
        "words": queued["words"] if queued else None,
        **_urls(import_id, name),
    }


def start_cifar10(*, session: Session, name: str = "cifar10") -> dict:
    """Queue an import of CIFAR-10 through the worker's Keras downloader."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "cifar10"
        marker.write_bytes(b"")  # an empty upload stands for the import while it waits
        return start_import(
            session=session, path=marker, name=name, filename="cifar10", source="cifar10"
        )


def _urls(import_id: int, name: str) -> dict:
    return {"status_url": f"/api/datasets/imports/{import_id}", "url": f"/datasets/{name}"}


def _delete_artifact(session: Session, artifact_id: int) -> None:
    session.execute(delete(ArtifactChunk).where(ArtifactChunk.artifact_id == artifact_id))
    session.execute(delete(Artifact).where(Artifact.id == artifact_id))


def _status(row: DatasetImport, panel_row: dict | None = None) -> dict:
    """An import as the API shows it: state pending (queued or running), done or failed;
    detail is the exact state; while pending, `queue` is its row of the queue panel
    (backend/runs/panel_imports.py: place, reason, times) and `words` that row in words."""
    moments = ("created_at", "started_at", "heartbeat_at", "finished_at")
    return {
        "queue": panel_row,
        "words": panel_row["words"] if panel_row else None,
        "import_id": row.id,
        "name": row.name,
        "file": row.file_name,
        "state": row.state.phase,
        "detail": row.state,
        "message": row.message,
        "dataset_id": row.dataset_id,
        **{key: (m.isoformat() if (m := aware(getattr(row, key))) else None) for key in moments},
        **_urls(row.id, row.name),
    }


def import_status(*, session: Session, import_id: int, name: str | None = None) -> dict:
    """One import by its id (404 when unknown, or when `name` is given and is not its name)."""
    row = session.get(DatasetImport, import_id)
    if row is None or (name is not None and name != row.name):
        raise NotFound("import", import_id)
    if row.state not in ImportState.active():
        return _status(row)
    return _status(row, panel_imports.row_of(session, import_id, clock.now(session)))


def pending_imports(session: Session) -> list[dict]:
    """Imports queued or running, oldest first."""
    rows = session.scalars(
        select(DatasetImport)
        .where(DatasetImport.state.in_(ImportState.active()))
        .order_by(DatasetImport.id)
    )
    now = clock.now(session)
    workers = workers_service.online(session, liveness.listed_within(), now=now)
    panel_rows = {found["id"]: found for found in panel_imports.rows(session, workers, now)}
    return [_status(row, panel_rows.get(row.id)) for row in rows]
