"""Responses are gzipped where it pays (HTML, JSON, JS, CSS); downloads go out as stored."""

from __future__ import annotations

import gzip
import hashlib

from tests.web.factories import make_run

GZIP = {"Accept-Encoding": "gzip"}
IDENTITY = {"Accept-Encoding": "identity"}


def _raw(client, url: str, headers: dict):
    """The response as sent: status, headers and the bytes on the wire (not decoded)."""
    with client.stream("GET", url, headers=headers) as response:
        return response.status_code, response.headers, b"".join(response.iter_raw())


def test_json_and_pages_are_gzipped_and_decode_to_the_same_bytes(client):
    for _ in range(3):  # a runs table well over the 1 KB threshold
        make_run("finetune", "succeeded", metrics={"finetune/val_accuracy": [0.5, 0.6]})
    for url in ("/api/runs/table", "/runs", "/static/js/dom.js", "/static/css/app.css"):
        _, plain_headers, plain = _raw(client, url, IDENTITY)
        status, headers, wire = _raw(client, url, GZIP)
        assert status == 200, url
        assert headers["content-encoding"] == "gzip", url
        assert "content-encoding" not in plain_headers, url
        assert "accept-encoding" in headers["vary"].lower(), url
        assert gzip.decompress(wire) == plain or url == "/runs", url  # pages carry a CSRF value
        assert len(wire) < len(plain), url


def test_gzip_keeps_the_security_headers(client):
    _, headers, _ = _raw(client, "/static/js/dom.js", GZIP)
    assert headers["content-encoding"] == "gzip"
    assert headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in headers["content-security-policy"]


def test_small_responses_are_not_gzipped(client):
    _, headers, body = _raw(client, "/api/health", GZIP)
    assert "content-encoding" not in headers
    assert body == b'{"status":"ok"}'


def test_a_weights_download_streams_unchanged(client):
    weights = bytes(range(256)) * 4096  # 1 MiB, compressible: still sent as stored
    run_id = make_run("finetune", "succeeded", artifacts={"classifier.weights.h5": weights})
    url = f"/api/runs/{run_id}/artifacts/classifier.weights.h5"
    status, headers, wire = _raw(client, url, GZIP)
    assert status == 200
    assert "content-encoding" not in headers
    assert headers["content-length"] == str(len(weights))
    assert wire == weights
    assert headers["x-checksum-sha256"] == hashlib.sha256(weights).hexdigest()


def test_plotly_bundle_is_sent_gzipped_and_whole(client):
    from backend.web import plotly_js_path

    _, headers, wire = _raw(client, "/vendor/plotly.min.js", GZIP)
    assert headers["content-encoding"] == "gzip"
    assert len(wire) < 1_500_000
    assert gzip.decompress(wire) == plotly_js_path().read_bytes()
