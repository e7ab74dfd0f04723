"""What a webhook receiver gets: the body (stacklab's JSON or a Slack message), one
sentence that says what happened, and the headers (event, delivery id, signature)."""

from __future__ import annotations

import hashlib
import hmac
import json

from jobspec.status import RunStatus
from store.base import JSONObject
from store.notify.vocabulary import NotifyEvent, WebhookFormat

MAX_BODY_BYTES = 16 * 1024  # a receiver never gets more; fields are cut to fit
USER_AGENT = "stacklab-webhook/1"
SIGNATURE_HEADER = "X-Stacklab-Signature-256"
DELIVERY_HEADER = "X-Stacklab-Delivery"
EVENT_HEADER = "X-Stacklab-Event"
ATTEMPT_HEADER = "X-Stacklab-Attempt"
NAME_CHARS = 200

VERBS = {
    NotifyEvent.RUN_SUCCEEDED: RunStatus.SUCCEEDED.value,
    NotifyEvent.RUN_FAILED: RunStatus.FAILED.value,
    NotifyEvent.RUN_CANCELLED: "was cancelled",
    NotifyEvent.RUN_WORKER_LOST: "lost its worker and was queued again",
    NotifyEvent.STUDY_FINISHED: "finished",
}


def link(path: str, base_url: str | None) -> str:
    """A page's address: absolute under STACKLAB_WEBHOOK_BASE_URL, else the path."""
    return f"{base_url}{path}" if base_url else path


def sentence(payload: JSONObject) -> str:
    """One line a person reads: 'Run 12 "ae sweep" (pretrain) failed on attempt 2 of 2:
    <error>'; 'Study 4 "aug" (ablation) finished: 6 succeeded, 1 failed.'"""
    event = NotifyEvent(payload["event"])
    if "study" in payload:
        study = payload["study"]
        counts = ", ".join(f"{n} {status}" for status, n in sorted(study["runs"].items()))
        return f'Study {study["id"]} "{study["name"]}" ({study["kind"]}) finished: {counts}.'
    run = payload["run"]
    text = f'Run {run["id"]} "{run["name"]}" ({run["kind"]}) {VERBS[event]}'
    if event in NotifyEvent.attention():
        text += f" on attempt {run['attempt']} of {run['max_attempts']}"
    if run.get("error") and event is NotifyEvent.RUN_FAILED:
        text += f": {run['error']}"
    return text + ("" if text.endswith(".") else ".")


def json_body(
    payload: JSONObject, *, delivery: str, occurred_at: str, base_url: str | None
) -> JSONObject:
    """stacklab's own body: the event, its delivery id, when, what, and a sentence."""
    body: JSONObject = {
        "event": payload["event"],
        "delivery": delivery,
        "occurred_at": occurred_at,
        "text": sentence(payload),
    }
    for part in ("run", "study"):
        if part in payload:
            item = dict(payload[part])
            item["url"] = link(item.pop("path"), base_url)
            item["name"] = str(item["name"])[:NAME_CHARS]
            body[part] = item
    return body


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters (its documented three)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(payload: JSONObject, *, base_url: str | None) -> JSONObject:
    """A Slack incoming-webhook message: the sentence, with a link to the page."""
    part = payload.get("study") or payload["run"]
    url = link(part["path"], base_url)
    text = _slack_escape(sentence(payload))
    if base_url:  # Slack links only absolute URLs
        text += f" <{url}|Open>"
    else:
        text += f" ({_slack_escape(url)})"
    return {"text": text}


def encode(
    payload: JSONObject,
    *,
    form: WebhookFormat,
    delivery: str,
    occurred_at: str,
    base_url: str | None,
) -> bytes:
    """The body's bytes, at most MAX_BODY_BYTES (a long error is cut to fit)."""
    for cut in (None, 2000, 200):
        if cut is not None:
            payload = _cut(payload, cut)
        if form is WebhookFormat.SLACK:
            body = slack_body(payload, base_url=base_url)
        else:
            body = json_body(payload, delivery=delivery, occurred_at=occurred_at, base_url=base_url)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) <= MAX_BODY_BYTES:
            return data
    raise ValueError(f"a webhook body of {len(data)} bytes is over {MAX_BODY_BYTES}")


def _cut(payload: JSONObject, chars: int) -> JSONObject:
    """The payload with its run's error and names cut to `chars` characters."""
    out = dict(payload)
    for part in ("run", "study"):
        if part in out:
            item = dict(out[part])
            item["name"] = str(item["name"])[:chars]
            if item.get("error"):
                item["error"] = str(item["error"])[:chars]
            out[part] = item
    return out


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(
    *, event: str, delivery: str, attempt: int, body: bytes, secret: str | None
) -> dict[str, str]:
    """Every header of one POST."""
    out = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: event,
        DELIVERY_HEADER: delivery,
        ATTEMPT_HEADER: str(attempt),
    }
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, body)
    return out
