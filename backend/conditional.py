"""Conditional GETs for the JSON the pages poll: a weak ETag from one small query, 304 when
it still matches, so an unchanged poll costs neither the full query nor its JSON.

The validator is what the answer is computed from, never the answer itself:

- one run (its page, progress, curves, partial state, study): the run's row as stored plus
  its last metric row id (and a tune's trial counts);
- many runs (the runs table, the queue, compare, ablation groups, reports): the runs
  table's change counter (store/runs/changes.py, kept by the database's triggers: one
  row, not an aggregate over every run), the last metric row id and the workers' last
  beat, plus a 30-second slot of the database's clock (read in the same query: the clock
  that stamped those times), because queue ETAs and "worker online" move with the clock
  and a data set or group rename touches no run: a page is at most 30 s behind it. While
  workers are listed, a heartbeat-long slot too, so a worker gone silent (two heartbeats)
  shows within a heartbeat more; a running run's own state has the same slot.

Polls are answered before FastAPI routes them (`PollShortcut`, pure ASGI, inside the
access check): 304 when unchanged, else the answer already made for that ETag (`Answers`),
so only the first page to see a change runs the route. The validators are kept for
STACKLAB_POLL_CACHE_SECONDS (default 1, the pace of the workers' progress writes): a
hundred pages polling one run cost one small query a second, not a hundred. A write
through this web process forgets them at once; a worker's write shows at most that late.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import anyio
from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.deps import SessionDep
from jobspec.status import RunStatus
from store import clock
from store.db import session_scope
from store.runs import changes
from store.runs.models import Metric, Run, RunSample, TuneTrial
from store.settings import get_settings
from store.workers.models import WorkerRecord

log = logging.getLogger(__name__)

CLOCK_SLOT_SECONDS = 30
MAX_ID = 2**63 - 1  # a larger id is no run: the route answers it (404)


def run_state(session: Session, run_id: int) -> tuple:
    """The run's stored row and its last metric and sample row ids, in one query; while it
    runs, a heartbeat-long slot of the database's clock too (its "last heard" and whether
    its worker went silent move with the clock, not with a write)."""
    last_metric = select(func.max(Metric.id)).where(Metric.run_id == run_id).scalar_subquery()
    last_sample = select(func.max(RunSample.id)).where(RunSample.run_id == run_id).scalar_subquery()
    row = session.execute(
        select(Run.__table__, last_metric, last_sample, clock.column(session)).where(
            Run.id == run_id
        )
    ).first()
    if not row:
        return ()
    *state, db_now = row
    if row.status != RunStatus.RUNNING:
        return tuple(state)
    return (*state, _beat_slot(db_now))


def _beat_slot(db_now) -> int:
    """A slot of the database's clock one heartbeat long (STACKLAB_HEARTBEAT_SECONDS)."""
    return int(clock.at(db_now).timestamp() // get_settings().heartbeat_seconds)


def study_state(session: Session, run_id: int) -> tuple:
    """A tune's row, its last metric and how many trials it stored and finished."""
    trials = select(func.count(), func.count(TuneTrial.value), func.sum(TuneTrial.seconds))
    counts = session.execute(trials.where(TuneTrial.run_id == run_id)).one()
    return (*run_state(session, run_id), *counts)


def runs_state(session: Session) -> tuple:
    """The runs table's change counter (store/runs/changes.py: bumped by the database on
    every write of a run, whoever makes it), the last metric row, the workers' last beat
    and count, and the clock slots: a few index lookups, whatever the store holds."""
    counter = changes.version(session)
    changed = (counter,) if counter is not None else _runs_aggregate(session)
    row = session.execute(
        select(
            select(func.max(Metric.id)).scalar_subquery(),
            select(func.max(WorkerRecord.last_seen)).scalar_subquery(),
            select(func.count()).select_from(WorkerRecord).scalar_subquery(),
            clock.column(session),  # the clock the stamps above are on, not this process's
        )
    ).one()
    *state, db_now = row
    workers = state[-1]  # while workers are listed, their "last heard" and silence move
    beat = _beat_slot(db_now) if workers else 0  # with the clock: a heartbeat-long slot
    return (*changed, *state, beat, int(clock.at(db_now).timestamp() // CLOCK_SLOT_SECONDS))


def _runs_aggregate(session: Session) -> tuple:
    """Every run's counts and latest times: what the counter stands for, read the long way
    (a database made without the migrations' triggers)."""
    r = Run.__table__.c
    return tuple(
        session.execute(
            select(
                func.count(),
                func.max(r.id),
                func.max(r.heartbeat_at),
                func.max(r.started_at),
                func.max(r.finished_at),
                func.max(r.queued_at),
                func.sum(r.attempts),
                func.sum(func.length(r.status) + func.length(r.name)),
                func.count(case((r.archived, 1))),
                func.count(case((r.cancel_requested, 1))),
                func.sum(r.priority),  # a priority change reorders the queue, stamping nothing
                func.count(r.set_aside_for),
            )
        ).one()
    )


def etag(request: Request, state: tuple) -> str:
    """A weak ETag (the body may be gzipped or not) of the state and the exact request."""
    text = f"{request.url.path}?{request.url.query}|{state!r}"
    return f'W/"{hashlib.blake2b(text.encode(), digest_size=12).hexdigest()}"'


class Validators:
    """The states above per (kind, id), each kept `poll_cache_seconds` after it was read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple, tuple[float, tuple]] = {}

    def get(self, key: tuple) -> tuple | None:
        ttl = get_settings().poll_cache_seconds
        with self._lock:
            kept = self._states.get(key)
        return kept[1] if kept and time.monotonic() - kept[0] < ttl else None

    def put(self, key: tuple, state: tuple) -> tuple:
        with self._lock:
            if len(self._states) > 10_000:  # ids are the client's choice: keep it bounded
                self._states.clear()
            self._states[key] = (time.monotonic(), state)
        return state

    def forget(self) -> None:
        with self._lock:
            self._states.clear()


VALIDATORS = Validators()

_STATES: dict[str, Callable[[Session, int], tuple]] = {
    "run": run_state,
    "study": study_state,
    "runs": lambda session, _id: runs_state(session),
}


def current(kind: str, run_id: int, session: Session) -> tuple:
    """A fresh state of `kind` (read now, and kept for the shortcut)."""
    return VALIDATORS.put((kind, run_id), _STATES[kind](session, run_id))


def answer(request: Request, response: Response, tag: str) -> None:
    """304 (no body) when the client already holds `tag`; else the route runs with it."""
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        raise HTTPException(304, headers=headers)
    response.headers.update(headers)


def _checked(
    kind: str, run_id: int, request: Request, response: Response, session: Session
) -> None:
    _learn(request, kind)
    answer(request, response, etag(request, current(kind, run_id, session)))


def _one_run(run_id: int, request: Request, response: Response, session: SessionDep) -> None:
    _checked("run", run_id, request, response, session)


def _study(run_id: int, request: Request, response: Response, session: SessionDep) -> None:
    _checked("study", run_id, request, response, session)


def _all_runs(request: Request, response: Response, session: SessionDep) -> None:
    _checked("runs", 0, request, response, session)


# Put in a route's `dependencies=[...]`; the route's own code and answer stay as they are.
fresh_run = Depends(_one_run)
fresh_study = Depends(_study)
fresh_runs = Depends(_all_runs)

# The full paths (prefix included) of the routes seen using the dependencies above, and
# the kind each uses. A route is learnt the first time it answers: no client can hold one
# of its ETags before that. Fixed paths are tried first (/api/runs/table, not as run
# "table" of /api/runs/{run_id}), as the router, where they come first, does.
_POLLED: dict[str, tuple[re.Pattern, str]] = {}
_ORDER: list[tuple[re.Pattern, str]] = []


def _learn(request: Request, kind: str) -> None:
    route, path = request.scope.get("route"), request.scope["path"]
    pattern = getattr(route, "path_regex", None)
    if route is None or pattern is None:
        return
    for at in (i for i, char in enumerate(path) if char == "/"):  # the router's prefix
        if pattern.match(path[at:]):
            template = path[:at] + route.path
            if template not in _POLLED:
                _POLLED[template] = (compile_path(template)[0], kind)
                by_fixed = sorted(_POLLED, key=lambda path: (path.count("{"), path))
                _ORDER[:] = [_POLLED[path] for path in by_fixed]
            return


class Answers:
    """Polled answers by ETag and encoding, so a hundred pages polling a run that changed
    cost one route call, not a hundred. An ETag stands for what the answer is computed
    from (see above), so one ETag is one answer; the newest `max_entries` are kept, none
    over `max_bytes`, and no Set-Cookie header is ever kept."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 1 << 20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple, tuple[list, bytes]] = OrderedDict()

    def get(self, key: tuple) -> tuple[list, bytes] | None:
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
            return found

    def put(self, key: tuple, headers: list, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        kept = [(name, value) for name, value in headers if name.lower() != b"set-cookie"]
        with self._lock:
            self._answers[key] = (kept, body)
            self._answers.move_to_end(key)
            while len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()


ANSWERS = Answers()


class PollShortcut:
    """Pure ASGI middleware for GETs of the routes that use fresh_run, fresh_study or
    fresh_runs: with the validator (kept up to STACKLAB_POLL_CACHE_SECONDS) it answers
    304 when the client holds the ETag, or the answer already made for that ETag; only an
    answer not made yet reaches FastAPI (and is kept). Anything else goes on untouched.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "GET":
                if await self._polled(scope, receive, send):
                    return
            elif scope["method"] not in ("HEAD", "OPTIONS"):
                # A write through this process: no poll may be answered from before it.
                VALIDATORS.forget()
                ANSWERS.forget()
        await self.app(scope, receive, send)

    async def _polled(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """True when the request was answered here (304, a kept answer, or a new one)."""
        if not scope["path"].startswith("/api/"):
            return False
        for pattern, kind in list(_ORDER):  # noqa: B007 (kind: the matched one)
            if matched := pattern.match(scope["path"]):
                break
        else:
            return False
        raw = 0 if kind == "runs" else matched.groupdict().get("run_id")
        run_id = raw if isinstance(raw, int) else None
        if isinstance(raw, str) and raw.isdecimal():
            run_id = int(raw)
        if run_id is None or run_id > MAX_ID:  # the route answers what is no run
            return False
        state = VALIDATORS.get((kind, run_id))
        if state is None:
            try:
                state = await anyio.to_thread.run_sync(_read, kind, run_id)
            except Exception as err:  # the route answers (and reports) a store that fails
                log.debug("poll shortcut: %s", err)
                return False
        tag = etag(Request(scope), state)
        headers = dict(scope["headers"])
        if tag in headers.get(b"if-none-match", b"").decode("latin-1"):
            await _send(send, 304, [(b"etag", tag.encode()), (b"cache-control", b"no-cache")])
            return True
        gzip = b"gzip" in headers.get(b"accept-encoding", b"")
        if kept := ANSWERS.get((tag, gzip)):
            await _send(send, 200, *kept)
            return True
        await self.app(scope, receive, _keeping(send, gzip))
        return True


async def _send(send: Send, status: int, headers: list, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _keeping(send: Send, gzip: bool) -> Send:
    """`send`, also keeping a 200 answer with an ETag in ANSWERS under that ETag."""
    start: dict = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body" and start.get("status") == 200:
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                tag = dict(start.get("headers", [])).get(b"etag")
                if tag:
                    ANSWERS.put((tag.decode("latin-1"), gzip), start["headers"], b"".join(chunks))
        await send(message)

    return keep


def _read(kind: str, run_id: int) -> tuple:
    with session_scope() as session:
        return current(kind, run_id, session)
