"""One action on many runs (the runs table's ticked rows), each run's outcome reported.

A run the action cannot apply to (a finished run to cancel, a running one to delete) is
refused with the reason and the others go ahead: the answer is 200 with per-run results,
never a 500 for one bad run. Deleting is one transaction for the whole request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sqlalchemy.orm import Session

from jobspec import text
from store.errors import InvalidRequest, NotFound
from store.runs import launch as launcher
from store.runs import limits
from store.runs import service as runs_service
from store.runs.models import Run
from store.settings import get_settings

# What one bulk action does to one run: (session, run id, the request's tag) -> the run.
RunAction = Callable[[Session, int, str], Run]

MAX_IDS = 500  # the runs table's largest page
Action = Literal["cancel", "tag", "untag", "archive", "unarchive", "delete"]
RunId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class BulkRequest(BaseModel):
    """An action on ticked runs; `tag` names the tag to add or remove."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    ids: list[RunId] = Field(..., min_length=1, max_length=MAX_IDS)
    tag: str | None = Field(None, max_length=1000, validate_default=True)

    @field_validator("tag")
    @classmethod
    def _tag_to_tag(cls, tag: str | None, info: ValidationInfo) -> str | None:
        tag = tag.strip() if tag else None
        if info.data.get("action") in ("tag", "untag") and not tag:
            raise ValueError("a tag is needed to add or remove one")
        return text.check(tag, text.TAG) if tag else None


def apply(*, session: Session, request: BulkRequest) -> dict:
    """Do the action on each run; {action, results: [{id, ok, error?, ...}], done, refused}."""
    ids = list(dict.fromkeys(request.ids))
    if request.action == "delete":
        outcomes = runs_service.delete_runs(session=session, run_ids=ids)
        session.commit()
        results = [
            {"id": i, "ok": reason is None, **({"error": reason} if reason else {})}
            for i, reason in outcomes.items()
        ]
    else:
        results = [_one(session, request, run_id) for run_id in ids]
    done = sum(1 for result in results if result["ok"])
    return {
        "action": request.action,
        "results": results,
        "done": done,
        "refused": len(results) - done,
    }


def _one(session: Session, request: BulkRequest, run_id: int) -> dict:
    """One run's outcome; a refusal leaves that run as it was."""
    try:
        run = ACTIONS[request.action](session, run_id, request.tag or "")  # tag: validated
    except NotFound:
        session.rollback()
        return {"id": run_id, "ok": False, "error": f"run {run_id} does not exist"}
    except InvalidRequest as err:
        session.rollback()
        return {"id": run_id, "ok": False, "error": err.reason}
    return {
        "id": run_id,
        "ok": True,
        "status": run.status,
        "archived": bool(run.archived),
        "tags": list(run.tags or []),
    }


def _cancel(session: Session, run_id: int, _tag: str) -> Run:
    return launcher.cancel(session=session, run_id=run_id)


def _tag(session: Session, run_id: int, tag: str) -> Run:
    run = runs_service.get_run(session, run_id)
    tags = list(run.tags or [])
    if tag in tags:
        return run
    settings = get_settings()
    limits.check_labels(settings, name=None, tags=[tag])  # the tag sent: today's rules
    if len(tags) + 1 > settings.max_tags:
        raise limits.over("tags", f"{len(tags) + 1} tags", settings.max_tags, "max_tags")
    return _store_tags(session, run, [*tags, tag])


def _untag(session: Session, run_id: int, tag: str) -> Run:
    run = runs_service.get_run(session, run_id)
    tags = list(run.tags or [])
    kept = [t for t in tags if t != tag]
    return run if kept == tags else _store_tags(session, run, kept)


def _store_tags(session: Session, run: Run, tags: list[str]) -> Run:
    """Only the tag added is checked: tags stored before today's text rules (read back
    cleaned, store/text_column.py) stay as they are, so such a run can still be tagged and
    untagged rather than refusing every bulk action on it."""
    run.tags = tags
    session.commit()
    session.refresh(run)
    return run


def _archiver(archived: bool) -> RunAction:
    def act(session: Session, run_id: int, _tag: str) -> Run:
        run = runs_service.set_archived(session=session, run_id=run_id, archived=archived)
        session.commit()
        return run

    return act


ACTIONS: dict[str, RunAction] = {
    "cancel": _cancel,
    "tag": _tag,
    "untag": _untag,
    "archive": _archiver(True),
    "unarchive": _archiver(False),
}
