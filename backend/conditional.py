"""Conditional GETs for the JSON the pages poll: a weak ETag from one small query, 304 when
it still matches, so an unchanged poll costs neither the full query nor its JSON.

The validator is what the answer is computed from, never the answer itself:

- one run (its page, progress, curves, partial state, study): the run's row as stored plus
  its last metric row id (and a tune's trial counts);
- many runs (the runs table, the queue, compare, ablation groups, reports): counts and
  latest times over all runs, the last metric row id and the workers' last beat, plus a
  30-second clock slot, because queue ETAs and "worker online" move with the clock and a
  rename changes no timestamp: a concurrently open page is at most 30 s behind an edit.
"""

from __future__ import annotations

import hashlib
import time

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from backend.deps import SessionDep
from store.runs.models import Metric, Run, TuneTrial
from store.workers.models import WorkerRecord

CLOCK_SLOT_SECONDS = 30


def run_state(session: Session, run_id: int) -> tuple:
    """The run's stored row and its last metric row id, in one query."""
    last_metric = select(func.max(Metric.id)).where(Metric.run_id == run_id).scalar_subquery()
    row = session.execute(select(Run.__table__, last_metric).where(Run.id == run_id)).first()
    return tuple(row) if row else ()


def study_state(session: Session, run_id: int) -> tuple:
    """A tune's row, its last metric and how many trials it stored and finished."""
    trials = select(func.count(), func.count(TuneTrial.value), func.sum(TuneTrial.seconds))
    counts = session.execute(trials.where(TuneTrial.run_id == run_id)).one()
    return (*run_state(session, run_id), *counts)


def runs_state(session: Session) -> tuple:
    """Every run's counts and latest times, the last metric row, the workers' last beat."""
    r = Run.__table__.c
    row = session.execute(
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
            select(func.max(Metric.id)).scalar_subquery(),
            select(func.max(WorkerRecord.last_seen)).scalar_subquery(),
            select(func.count()).select_from(WorkerRecord).scalar_subquery(),
        )
    ).one()
    return (*row, int(time.time() // CLOCK_SLOT_SECONDS))


def etag(request: Request, state: tuple) -> str:
    """A weak ETag (the body may be gzipped or not) of the state and the exact request."""
    text = f"{request.url.path}?{request.url.query}|{state!r}"
    return f'W/"{hashlib.blake2b(text.encode(), digest_size=12).hexdigest()}"'


def answer(request: Request, response: Response, tag: str) -> None:
    """304 (no body) when the client already holds `tag`; else the route runs with it."""
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        raise HTTPException(304, headers=headers)
    response.headers.update(headers)


def _one_run(run_id: int, request: Request, response: Response, session: SessionDep) -> None:
    answer(request, response, etag(request, run_state(session, run_id)))


def _study(run_id: int, request: Request, response: Response, session: SessionDep) -> None:
    answer(request, response, etag(request, study_state(session, run_id)))


def _all_runs(request: Request, response: Response, session: SessionDep) -> None:
    answer(request, response, etag(request, runs_state(session)))


# Put in a route's `dependencies=[...]`; the route's own code and answer stay as they are.
fresh_run = Depends(_one_run)
fresh_study = Depends(_study)
fresh_runs = Depends(_all_runs)
