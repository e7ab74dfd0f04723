"""The data set upload's multipart parser has edges too: parts counted as they begin, each
part's header lines capped, the declared length checked before it is converted."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from starlette.requests import Request

from backend.datasets import imports
from store.settings import get_settings
from tests.stack import run_async

BOUNDARY = "edgeboundary"
CTYPE = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def _part(name: str, value: bytes, *, filename: str | None = None, extra: str = "") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{extra}\r\n"
    return head.encode() + value + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def test_a_flood_of_tiny_fields_is_refused_at_the_first_part_too_many(client):
    body = _body(
        *(_part(f"f{i}", b"x") for i in range(100_000)), _part("file", b"z", filename="a.npz")
    )
    tracemalloc.start()
    try:
        answer = client.post("/api/datasets/upload?name=flood", content=body, headers=CTYPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 413
    assert "more than 16 parts (STACKLAB_MAX_FORM_PARTS)" in answer.json()["detail"]
    # The body itself is ~6 MB (the test client may copy it once); 100,000 parsed fields
    # would hold far more. Generous: the point is that nothing grows with the part count.
    assert peak < 4 * len(body) + (16 << 20), peak


def test_a_long_part_header_line_is_refused_naming_the_setting(client):
    long_header = "X-Pad: " + "p" * 5000 + "\r\n"
    body = _body(_part("file", b"z", filename="a.npz", extra=long_header))
    answer = client.post("/api/datasets/upload?name=long-head", content=body, headers=CTYPE)
    assert answer.status_code == 413
    assert "STACKLAB_MAX_PART_HEADER_KB" in answer.json()["detail"]


def test_a_refusal_after_the_file_began_leaves_no_temp_file(client):
    uploads = get_settings().data_dir / "uploads"
    body = _body(
        _part("file", b"z" * 1000, filename="a.npz"),
        _part("name", b"x", extra="X-Pad: " + "p" * 5000 + "\r\n"),
    )
    answer = client.post("/api/datasets/upload?name=leak", content=body, headers=CTYPE)
    assert answer.status_code == 413
    assert not list(uploads.glob("upload-*.part"))


def test_too_many_header_lines_in_one_part_are_refused(client):
    lines = "".join(f"X-H{i}: v\r\n" for i in range(20))
    body = _body(_part("file", b"z", filename="a.npz", extra=lines))
    answer = client.post("/api/datasets/upload?name=many-heads", content=body, headers=CTYPE)
    assert answer.status_code == 413 and "header lines" in answer.json()["detail"]


@pytest.mark.parametrize("declared", ["9" * 5000, "12abc", "-1", "１２"])
def test_a_hostile_content_length_is_refused_not_a_500(tmp_path, declared):
    request = _request(b"", {"content-length": declared.encode()})
    with pytest.raises(Exception) as caught:
        run_async(lambda: imports.receive(request, dest_dir=tmp_path))
    assert getattr(caught.value, "status_code", None) == 413 or isinstance(
        caught.value, imports.InvalidRequest
    ), repr(caught.value)


def test_header_pieces_split_across_reads_are_gathered(tmp_path):
    """A part's headers arriving one byte per read still name its field and file."""
    body = _body(_part("name", b"my-set"), _part("file", b"payload", filename="set.npz"))
    received = run_async(lambda: imports.receive(_request(body, {}, piece=1), dest_dir=tmp_path))
    assert received.fields == {"name": "my-set"} and received.filename == "set.npz"
    assert received.path is not None and Path(received.path).read_bytes() == b"payload"


def _request(body: bytes, headers: dict[bytes | str, bytes], *, piece: int = 65536) -> Request:
    chunks = [body[i : i + piece] for i in range(0, len(body), piece)] or [b""]
    raw = [(b"content-type", CTYPE["Content-Type"].encode())]
    raw += [(k.encode() if isinstance(k, str) else k, v) for k, v in headers.items()]

    async def receive() -> dict:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""}
    return Request(scope, receive)
