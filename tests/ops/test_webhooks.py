"""Webhooks: an event per ended attempt, written with the status change, delivered by the
web's sender to a local receiver, signed, retried with back-off, never twice after a
success, and never in the way of a run's final write. On SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from jobspec.status import RunStatus
from store import clock
from store.db import session_scope
from store.notify import sender as notify_sender
from store.notify import transport
from store.notify.body import MAX_BODY_BYTES
from store.notify.models import OutboxEvent, WebhookDelivery
from store.notify.sender import Sender
from store.notify.vocabulary import DeliveryState, NotifyEvent, WebhookFormat
from store.runs import attempts
from store.runs import service as runs_service
from store.runs.models import Run, RunGroup
from store.runs.upkeep import reap_stale
from store.settings import Settings
from tests.ops.helpers import finish, running_run, settle, silence
from tests.stack import wait_for

SECRET = "hook-secret-1234"


def make_sender(url: str, **options: object) -> Sender:
    values: dict = {"webhook_urls": [url], "webhook_backoff_seconds": 0.05} | options
    return Sender(session_scope=session_scope, settings=Settings(**values))


def events_of(run_id: int) -> list[OutboxEvent]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(OutboxEvent).where(OutboxEvent.run_id == run_id).order_by(OutboxEvent.id)
            )
        )


def deliveries_to(url: str) -> list[WebhookDelivery]:
    with session_scope() as session:
        return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.url == url)))


def test_a_finished_run_is_posted_once_signed_with_its_delivery_id(store, receiver):
    settle()
    run_id = running_run(store, name="sweep <1>")
    finish(run_id, RunStatus.SUCCEEDED)
    sender = make_sender(receiver.url, webhook_secret=SECRET)
    assert sender.round()["delivered"] == 1
    got = receiver.next()
    expected = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
    assert got.headers["X-Stacklab-Signature-256"] == f"sha256={expected}"
    body = got.json()
    event = events_of(run_id)[0]
    assert got.headers["X-Stacklab-Delivery"] == body["delivery"] == event.uid
    assert got.headers["X-Stacklab-Event"] == body["event"] == NotifyEvent.RUN_SUCCEEDED
    assert got.headers["X-Stacklab-Attempt"] == "1"
    assert body["run"]["id"] == run_id and body["occurred_at"]
    assert body["run"]["status"] == RunStatus.SUCCEEDED and body["run"]["url"] == f"/runs/{run_id}"
    assert body["text"] == f'Run {run_id} "sweep <1>" (pretrain) succeeded.'
    for _ in range(3):  # delivered: later rounds send nothing more
        assert sender.round()["attempted"] == 0
    assert receiver.count() == 0
    [delivery] = deliveries_to(receiver.url)
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts == 1


def test_a_receiver_answering_500_gets_the_same_delivery_again_after_a_back_off(store, receiver):
    settle()
    receiver.statuses = [500]
    run_id = running_run(store)
    finish(run_id, RunStatus.FAILED, error="ValueError: loss is NaN")
    sender = make_sender(receiver.url)
    first = sender.round()
    assert first["attempted"] == 1 and first["delivered"] == 0
    [delivery] = deliveries_to(receiver.url)
    assert delivery.state == DeliveryState.PENDING and delivery.last_status == 500
    assert delivery.next_attempt_at > delivery.last_attempt_at  # a back-off, not at once
    wait_for(lambda: sender.round()["delivered"], timeout=30, what="the second attempt")
    one, two = receiver.next(), receiver.next()
    assert (
        one.body == two.body
        and one.headers["X-Stacklab-Delivery"] == two.headers["X-Stacklab-Delivery"]
    )
    assert (one.headers["X-Stacklab-Attempt"], two.headers["X-Stacklab-Attempt"]) == ("1", "2")
    assert two.json()["event"] == NotifyEvent.RUN_FAILED
    assert "loss is NaN" in two.json()["text"] and "attempt 1 of 2" in two.json()["text"]
    assert sender.round()["attempted"] == 0 and receiver.count() == 0


def test_a_delivery_is_given_up_after_its_attempts(store, receiver):
    settle()
    receiver.statuses = [503, 503, 503]
    finish(running_run(store), RunStatus.CANCELLED)
    sender = make_sender(receiver.url, webhook_max_attempts=2)

    def given_up() -> bool:
        sender.round()
        return deliveries_to(receiver.url)[0].state == DeliveryState.FAILED

    wait_for(given_up, timeout=30, what="the delivery given up")
    [delivery] = deliveries_to(receiver.url)
    assert delivery.attempts == 2 and delivery.last_status == 503
    assert sender.round()["attempted"] == 0


def test_the_slack_body_is_one_escaped_line_with_a_link(store, receiver):
    settle()
    run_id = running_run(store, name="a<b>&c")
    finish(run_id, RunStatus.SUCCEEDED)
    sender = make_sender(
        receiver.url,
        webhook_format=WebhookFormat.SLACK,
        webhook_base_url="https://lab.example/",
    )
    assert sender.round()["delivered"] == 1
    body = receiver.next().json()
    assert body == {
        "text": f'Run {run_id} "a&lt;b&gt;&amp;c" (pretrain) succeeded. '
        f"<https://lab.example/runs/{run_id}|Open>"
    }


def test_a_lost_worker_asks_for_attention_and_the_last_loss_fails_the_run(store, receiver):
    settle()
    run_id = running_run(store)
    silence(run_id)
    with session_scope() as session:
        assert reap_stale(session=session, stale_after=60) == [(run_id, RunStatus.QUEUED)]
    with session_scope() as session:
        attempts.claim(session=session, run_id=run_id, worker_host="h", device="CPU", versions={})
    silence(run_id)
    with session_scope() as session:
        assert reap_stale(session=session, stale_after=60) == [(run_id, RunStatus.FAILED)]
    kinds = [event.event for event in events_of(run_id)]
    assert kinds == [NotifyEvent.RUN_WORKER_LOST, NotifyEvent.RUN_FAILED]
    sender = make_sender(receiver.url)
    assert sender.round()["delivered"] == 2
    lost, failed = receiver.next().json(), receiver.next().json()
    assert lost["event"] == NotifyEvent.RUN_WORKER_LOST and "attempt 1 of 2" in lost["text"]
    assert failed["event"] == NotifyEvent.RUN_FAILED and "attempt 2 of 2" in failed["text"]


def test_a_run_handed_back_by_a_stopping_worker_tells_nobody(store):
    settle()
    run_id = running_run(store)
    with session_scope() as session:
        attempts.hand_back(session=session, run_id=run_id, attempt=1, reason="SIGTERM")
    assert events_of(run_id) == []


def test_a_study_is_announced_once_when_its_last_run_ends(store, receiver):
    settle()
    with session_scope() as session:
        group = RunGroup(kind="ablation", name="augmentation study", params={})
        session.add(group)
        session.flush()
        group_id = group.id
    first, second = (running_run(store, group_id=group_id) for _ in range(2))
    finish(first, RunStatus.SUCCEEDED)
    sender = make_sender(receiver.url)
    assert sender.round()["delivered"] == 1  # the run; the study is not over
    finish(second, RunStatus.FAILED, error="boom")
    wait_for(
        lambda: sender.round()["delivered"] == 0 and receiver.count() >= 3,
        timeout=30,
        what="the run's and the study's posts",
    )
    bodies = [receiver.next().json() for _ in range(3)]
    studies = [body for body in bodies if body["event"] == NotifyEvent.STUDY_FINISHED]
    assert len(studies) == 1 and studies[0]["study"]["id"] == group_id
    assert studies[0]["study"]["runs"] == {"succeeded": 1, "failed": 1}
    assert studies[0]["study"]["url"] == f"/groups/{group_id}"
    for _ in range(2):
        sender.round()
    assert receiver.count() == 0


def test_a_new_run_that_gets_a_deleted_runs_id_still_tells(store):
    """SQLite gives a deleted run's id to the next run: its events are its own."""
    settle()
    gone = running_run(store)
    finish(gone, RunStatus.FAILED, error="x")
    with session_scope() as session:
        runs_service.delete_runs(session=session, run_ids=[gone])
    again = running_run(store)
    finish(again, RunStatus.SUCCEEDED)
    assert NotifyEvent.RUN_SUCCEEDED in [event.event for event in events_of(again)]


def test_a_dead_receiver_never_holds_up_a_runs_final_write(store):
    """The sender is stuck in a POST to a receiver that never answers; a run's final write
    commits meanwhile, with its event, and the stuck attempt is recorded once it ends."""
    settle()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(8)  # connections queue in the backlog and are never answered
    url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    finish(running_run(store), RunStatus.SUCCEEDED)
    in_post, post_returned = threading.Event(), threading.Event()

    def post(target: str, data: bytes, head: dict[str, str]) -> transport.Answer:
        in_post.set()
        try:
            return transport.post(target, data, head, timeout=120)
        finally:
            post_returned.set()

    settings = Settings(webhook_urls=[url], webhook_backoff_seconds=0.05)
    sender = Sender(session_scope=session_scope, settings=settings, post=post)
    stuck = threading.Thread(target=sender.round)
    stuck.start()
    assert in_post.wait(60), "the sender never started its POST"
    run_id = running_run(store)
    finish(run_id, RunStatus.SUCCEEDED)  # returns while the sender waits on the dead receiver
    assert not post_returned.is_set()
    with session_scope() as session:
        assert session.get_one(Run, run_id).status == RunStatus.SUCCEEDED
    assert [event.event for event in events_of(run_id)] == [NotifyEvent.RUN_SUCCEEDED]
    dead.close()  # the stuck connection is reset: the attempt fails and is recorded
    stuck.join(60)
    assert not stuck.is_alive()
    [delivery] = [d for d in deliveries_to(url) if d.attempts]
    assert delivery.state == DeliveryState.PENDING and delivery.last_error


def test_an_oversized_error_is_cut_to_the_body_budget(store, receiver):
    settle()
    run_id = running_run(store)
    finish(run_id, RunStatus.FAILED, error="x" * 50_000)
    assert make_sender(receiver.url).round()["delivered"] == 1
    got = receiver.next()
    assert len(got.body) <= MAX_BODY_BYTES and json.loads(got.body)["run"]["error"]


@pytest.mark.parametrize(
    ("urls", "words"),
    [
        ([f"http://h{i}.example/" for i in range(11)], "at most 10"),
        (["ftp://h.example/x"], "http:// or https://"),
        (["http://h.example/" + "a" * 2100], "longer than 2048"),
        (["http://h.example/é"], "printable ASCII"),
    ],
)
def test_webhook_urls_past_their_budgets_are_refused_naming_the_setting(urls, words):
    with pytest.raises(ValueError, match="webhook_urls") as refused:
        Settings(webhook_urls=urls)
    assert words in str(refused.value)


def test_a_refused_webhook_url_keeps_its_secret_path_out_of_the_error():
    """A Slack URL's path is its secret: the error (logged at start) names the host only."""
    for url in (
        "hooks.slack.com/services/T0/B0/s3cr3t-path",  # no scheme
        "ftp://user:pw@hooks.example/services/s3cr3t-path",
        "https://hooks.example/s3cr3t-path/" + "a" * 2100,
    ):
        with pytest.raises(ValueError, match="webhook_urls") as refused:
            Settings(webhook_urls=[url])
        text = str(refused.value)
        assert "hooks." in text and "s3cr3t" not in text and "pw" not in text, text


def test_webhook_urls_read_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("STACKLAB_WEBHOOK_URLS", "http://a.example/x, https://b.example")
    assert Settings().webhook_urls == ["http://a.example/x", "https://b.example"]


def test_only_the_events_asked_for_are_sent(store, receiver):
    settle()
    finish(running_run(store), RunStatus.SUCCEEDED)
    failed = running_run(store)
    finish(failed, RunStatus.FAILED, error="boom")
    sender = make_sender(receiver.url, webhook_events=[NotifyEvent.RUN_FAILED])
    assert sender.round() == {"dispatched": 2, "attempted": 1, "delivered": 1}
    assert receiver.next().json()["run"]["id"] == failed and receiver.count() == 0


def test_webhook_events_read_from_a_comma_separated_variable(monkeypatch):
    monkeypatch.setenv("STACKLAB_WEBHOOK_EVENTS", "run.failed, run.worker_lost")
    assert Settings().webhook_events == [NotifyEvent.RUN_FAILED, NotifyEvent.RUN_WORKER_LOST]
    monkeypatch.setenv("STACKLAB_WEBHOOK_EVENTS", "run.exploded")
    with pytest.raises(ValueError, match="webhook_events"):
        Settings()


def test_one_attempt_is_claimed_by_one_sender_only(store, receiver):
    """Two web processes' senders see the same due delivery: one claim wins."""
    settle()
    finish(running_run(store), RunStatus.SUCCEEDED)
    with session_scope() as session:
        notify_sender.dispatch(session, [receiver.url])
    with session_scope() as session:
        [(delivery_id, attempts)] = notify_sender.due(session)
    with session_scope() as session:
        assert notify_sender.claim(session, delivery_id, attempts, lease_s=60)
    with session_scope() as session:
        assert not notify_sender.claim(session, delivery_id, attempts, lease_s=60)
        assert notify_sender.due(session) == []  # leased: nobody tries it meanwhile


def test_events_and_their_deliveries_are_forgotten_after_a_week(store, receiver):
    settle()
    run_id = running_run(store)
    finish(run_id, RunStatus.SUCCEEDED)
    assert make_sender(receiver.url).round()["delivered"] == 1
    with session_scope() as session:
        session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.run_id == run_id)
            .values(created_at=clock.now(session) - timedelta(days=8))
        )
    with session_scope() as session:
        assert notify_sender.purge(session) >= 1
    assert events_of(run_id) == [] and deliveries_to(receiver.url) == []


def test_a_study_whose_last_run_is_cancelled_while_queued_is_announced(store):
    """A queued cancel ends no attempt: the study's end is still told, once."""
    settle()
    with session_scope() as session:
        group = RunGroup(kind="ablation", name="cancelled study", params={})
        session.add(group)
        session.flush()
        group_id = group.id
    done = running_run(store, group_id=group_id)
    finish(done, RunStatus.SUCCEEDED)
    with session_scope() as session:
        queued = runs_service.create_run(
            session=session, kind="pretrain", name="q", params={}, dataset_id=store,
            group_id=group_id,
        ).id  # fmt: skip

    def study_events() -> list[OutboxEvent]:
        with session_scope() as session:
            return list(
                session.scalars(
                    select(OutboxEvent).where(
                        OutboxEvent.group_id == group_id,
                        OutboxEvent.event == NotifyEvent.STUDY_FINISHED,
                    )
                )
            )

    assert study_events() == []  # a run is still queued
    with session_scope() as session:
        runs_service.request_cancel(session=session, run_id=queued)
    assert len(study_events()) == 1
