"""An experiment: a pretrain run with the tunes around it, the finetunes on its encoders, the
ablation studies among those finetunes, and the researcher's notes, gathered for one page
(and its self-contained export)."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from backend.datasets import listing
from backend.formatting import flatten, readable
from backend.reports import studies
from backend.runs import detail
from jobspec import kinds
from store.errors import NotFound
from store.runs import service as runs_service
from store.runs.models import Run, RunGroup
from store.timeutil import aware, utcnow

MAX_FINETUNES = 200  # a report lists at most this many (newest kept), and says so
MAX_TUNES_BEFORE = 10  # tunes on the same data set created before the pretrain


def pretrain_of(session: Session, run_id: int) -> Run:
    """The pretrain run an experiment is named by, or NotFound."""
    run = runs_service.get_run(session, run_id)
    if not kinds.features(run.kind).experiment_root:
        raise NotFound("experiment (a pretrain run)", run_id)
    return run


def experiment(*, session: Session, run_id: int) -> dict:
    """Everything the report shows, JSON-ready."""
    pretrain = pretrain_of(session, run_id)
    dataset = listing.by_id(session, pretrain.dataset_id)  # bounded, whatever the row holds
    finetunes, total = _finetunes(session, pretrain)
    groups = _groups(session, finetunes)
    summaries = [studies.summary(session=session, group=group) for group in groups]
    return {
        "id": pretrain.id,
        "url": f"/experiments/{pretrain.id}",
        "generated_at": utcnow().isoformat(),
        "dataset": {
            "name": dataset.name,
            "n_train": dataset.n_train,
            "n_test": dataset.n_test,
            "classes": dataset.n_classes,
            "fingerprint": dataset.fingerprint,
        },
        "root": _pretrain(pretrain),
        "tunes": _tunes(session, pretrain),
        "finetunes": [_finetune(run, dataset.train_counts or {}) for run in finetunes],
        "finetunes_total": total,
        "studies": summaries,
        "multiplicity": studies.multiplicity(summaries),
        "running": any(r.status.is_active for r in [pretrain, *finetunes]),
    }


def _pretrain(run: Run) -> dict:
    result = run.result or {}
    return {
        **_brief(run),
        "params": [(key, readable(value)) for key, value in flatten(run.params or {}).items()],
        "stages": _stages(run),
        "test_reconstruction_loss": result.get("test_reconstruction_loss"),
        "yardsticks": detail.yardsticks(run),
        "split": detail.split_of(run),
        "warnings": detail.warnings_of(run),
        "finished_at": aware(run.finished_at).isoformat() if run.finished_at else None,
    }


def _brief(run: Run) -> dict:
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "tags": list(run.tags or []),
        "created_at": aware(run.created_at).isoformat(),
        "notes": run.notes,
    }


def _stages(run: Run) -> list[dict]:
    """Per autoencoder stage: epochs run of planned, best validation loss and its epoch."""
    stages = (run.result or {}).get("stages") or {}
    params = run.params or {}
    rows = []
    for stage, summary in stages.items():
        final = summary.get("final") or {}
        rows.append(
            {
                "stage": stage,
                "epochs_run": summary.get("epochs_run"),
                "epochs_planned": (params.get(stage) or {}).get("epochs"),
                "kernel_size": (params.get(stage) or {}).get("kernel_size"),
                "best_epoch": summary.get("best_epoch"),
                "best_value": summary.get("best_value"),
                "loss": final.get("loss"),
                "val_loss": final.get("val_loss"),
                "seconds": summary.get("seconds"),
                "cancelled": bool(summary.get("cancelled")),
            }
        )
    return rows


def _studies() -> tuple[str, ...]:
    """The kinds whose runs are the report's tunes: they search with a study."""
    return kinds.having(lambda f: f.study)


def _classifiers() -> tuple[str, ...]:
    """The kinds whose runs are the report's finetunes: they are scored on the test set."""
    return kinds.having(lambda f: f.evaluation)


def _tunes(session: Session, pretrain: Run) -> list[dict]:
    """Tunes that use the pretrain, and those on its data set made before it (newest first)."""
    children = session.scalars(
        select(Run)
        .where(Run.kind.in_(_studies()), Run.parent_run_id == pretrain.id)
        .order_by(Run.id)
    ).all()
    before = session.scalars(
        select(Run)
        .where(
            Run.kind.in_(_studies()),
            Run.dataset_id == pretrain.dataset_id,
            Run.created_at < pretrain.created_at,
            or_(Run.parent_run_id.is_(None), Run.parent_run_id != pretrain.id),
        )
        .order_by(Run.created_at.desc())
        .limit(MAX_TUNES_BEFORE)
    ).all()
    rows = []
    for relation, runs in (("uses this pretrain", children), ("before it, same data set", before)):
        for run in runs:
            result = run.result or {}
            rows.append(
                {
                    **_brief(run),
                    "relation": relation,
                    "stage": (run.params or {}).get("stage"),
                    "trials": result.get("trials"),
                    "best_value": result.get("best_value"),
                    "best_params": result.get("best_params") or {},
                }
            )
    return rows


def _finetunes(session: Session, pretrain: Run) -> tuple[list[Run], int]:
    """Finetunes on the pretrain's encoders, and the other runs of their studies (a
    pretraining study's scratch arm has no parent); at most MAX_FINETUNES, by id."""
    groups = select(Run.group_id).where(Run.parent_run_id == pretrain.id, Run.group_id.is_not(None))
    query = select(Run).where(
        Run.kind.in_(_classifiers()),
        or_(Run.parent_run_id == pretrain.id, Run.group_id.in_(groups)),
    )
    runs = session.scalars(query.order_by(Run.id.desc()).limit(MAX_FINETUNES)).all()
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    return sorted(runs, key=lambda r: r.id), int(total or 0)


def _finetune(run: Run, train_counts: dict[str, int]) -> dict:
    params = run.params or {}
    training = detail.training_state(run) or {}
    return {
        **_brief(run),
        "parent_run_id": run.parent_run_id,
        "group_id": run.group_id,
        "encoder": params.get("encoder"),
        "freeze_encoder": params.get("freeze_encoder"),
        "augment": params.get("augment"),
        "class_weights": params.get("class_weights"),
        "seed": params.get("seed", run.seed),
        "kept_epoch": training.get("kept_epoch"),
        "training": training.get("text"),
        "warnings": detail.warnings_of(run),
        "scores": detail.scores(run, train_counts),
    }


def _groups(session: Session, finetunes: list[Run]) -> list[RunGroup]:
    ids = sorted({r.group_id for r in finetunes if r.group_id is not None})
    if not ids:
        return []
    return list(session.scalars(select(RunGroup).where(RunGroup.id.in_(ids)).order_by(RunGroup.id)))
