"""Plain functions that write runs straight into the store, for page and API tests.

No training, no queue: rows go in through the services (create, claim, log, store, finish),
on whatever database the current settings point at (the `client` fixture's).
"""

from __future__ import annotations

import io
import tempfile
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
from sqlalchemy import delete, insert, update

from jobspec import kinds
from jobspec.metrics import split_key
from jobspec.status import ImportState, RunStatus
from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.datasets.models import DatasetImport
from store.db import session_scope
from store.runs import attempts
from store.runs import metrics as metrics_service
from store.runs import samples as samples_service
from store.runs import service as runs_service
from store.runs.models import Metric, Run, RunGroup
from store.timeutil import utcnow
from store.workers import service as workers_service
from store.workers.models import WorkerRecord

CLASS_NAMES = ["airplane", "automobile", "bird"]


def make_run(
    kind: str = "finetune",
    status: str = "succeeded",
    *,
    metrics: dict[str, list[float]] | None = None,
    samples: dict[str, list[tuple[float, float]]] | None = None,
    artifacts: dict[str, bytes] | None = None,
    result: dict | None = None,
    progress: dict | None = None,
    name: str | None = None,
    tags: list[str] | None = None,
    group_id: int | None = None,
    parent_run_id: int | None = None,
    params: dict | None = None,
    dataset: str = "demo-tiny",
    error: str | None = None,
    traceback: str | None = None,
    created_at: datetime | None = None,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    worker_host: str = "test-host",
    device: str = "CPU",
) -> int:
    """One run in the given status with its metrics ({"stage/name": [epoch 1, 2, ...]}),
    its attempt 1's system samples ({"rss_mb": [(seconds, value), ...]}) and files.

    params are merged over the kind's defaults; times, when given, override the real ones.
    """
    with session_scope() as session:
        run = runs_service.create_run(
            session=session,
            kind=kind,
            name=name or kind,
            tags=list(tags or []),
            params=_params(kind, params or {}),
            seed=(params or {}).get("seed", 0),
            dataset_id=datasets_service.get_by_name(session, dataset).id,
            parent_run_id=parent_run_id,
            group_id=group_id,
        )
        run_id = run.id
        run.sent_at = utcnow()  # as a launch does once its message is out
        if name is None:
            run.name = f"{kind} #{run_id}"
        if created_at is not None:
            run.created_at = created_at
        if status != "queued":
            attempts.claim(
                session=session,
                run_id=run_id,
                worker_host=worker_host,
                device=device,
                versions={"python": "3.11"},
            )
        _log_metrics(session, run_id, metrics or {})
        _log_samples(session, run_id, samples or {})
        for file_name, data in (artifacts or {}).items():
            _store_bytes(session, run_id, file_name, data)
        if progress is not None and status != "queued":
            attempts.beat(session=session, run_id=run_id, attempt=1, progress=progress)
        if status in RunStatus.finished():
            attempts.finish(
                session=session,
                run_id=run_id,
                attempt=1,
                status=status,
                result=result,
                error=error,
                traceback=traceback,
            )
        elif result:
            run.result = result
        session.flush()
        run = runs_service.get_run(session, run_id)
        if started_at is not None:
            run.started_at = started_at
        if finished_at is not None:
            run.finished_at = finished_at
    return run_id


def make_group(kind: str = "augmentation_study", name: str = "study", params=None) -> int:
    """A run group (augmentation study or parallel tune); returns its id."""
    with session_scope() as session:
        group = RunGroup(kind=kind, name=name, params=params or {})
        session.add(group)
        session.flush()
        return group.id


def settle_queue(*, imports: bool = False) -> None:
    """Nothing of the module waits or runs (its runs cancelled, imports failed when asked)
    and no worker is online: a test of the queue then sees only its own rows."""
    with session_scope() as session:
        session.execute(
            update(Run)
            .where(Run.status.in_(RunStatus.active()))
            .values(status=RunStatus.CANCELLED, cancel_requested=False, set_aside_for=None)
        )
        session.execute(delete(WorkerRecord))
        if imports:
            session.execute(
                update(DatasetImport)
                .where(DatasetImport.state.in_(ImportState.active()))
                .values(state=ImportState.FAILED)
            )


def make_worker(
    name: str = "worker@test-host",
    *,
    host: str = "test-host",
    device: str = "GPU:0",
    current_run_id: int | None = None,
) -> str:
    """A worker that reported in just now (online), on the given run or idle."""
    with session_scope() as session:
        workers_service.report(
            session=session, name=name, host=host, device=device, current_run_id=current_run_id
        )
    return name


def npz_bytes(**arrays) -> bytes:
    """An .npz file's bytes holding the given arrays."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def reconstructions_npz(n: int = 4, seed: int = 0) -> bytes:
    """A pretrain run's reconstructions.npz: uint8 input/ae01/ae02/ae03 of shape (n,32,32,3)."""
    rng = np.random.default_rng(seed)
    return npz_bytes(
        **{
            key: rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
            for key in ("input", "ae01", "ae02", "ae03")
        }
    )


def finetune_result(
    class_names: list[str] | None = None, *, best_epoch: int = 2, epochs_run: int = 4
) -> dict:
    """A finetune run's result: training summary and evaluation with a confusion matrix."""
    names = class_names or CLASS_NAMES
    n = len(names)
    matrix = [[8 if i == j else 1 for j in range(n)] for i in range(n)]
    per_class = {
        cls: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": sum(matrix[i])}
        for i, cls in enumerate(names)
    }
    return {
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "best_value": 0.5,
            "monitor": "val_loss",
            "stopped_early": epochs_run > best_epoch,
            "final": {"accuracy": 0.8, "val_accuracy": 0.75},
        },
        "evaluation": {
            "accuracy": 0.8,
            "balanced_accuracy": 0.8,
            "per_class": per_class,
            "confusion_matrix": matrix,
            "class_names": names,
        },
    }


def _params(kind: str, overrides: dict) -> dict:
    merged = kinds.get(kind).params().model_dump(mode="json")
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _log_samples(session, run_id: int, samples: dict[str, list[tuple[float, float]]]) -> None:
    readings = [(t, 0.0, {key: value}) for key, points in samples.items() for t, value in points]
    samples_service.record(session=session, run_id=run_id, attempt=1, readings=readings)


def _log_metrics(session, run_id: int, metrics: dict[str, list[float]]) -> None:
    for key in metrics:  # epochs only, as the store takes them (samples: _log_samples)
        stage, name = split_key(key)
        metrics_service.check_epoch(stage, [name])
    # One bulk insert, then the summaries log_epoch would keep (first best step wins), so a
    # 5,000-epoch series takes well under a second on PostgreSQL too.
    now = time.time()
    rows = [
        {"run_id": run_id, "key": key, "step": i + 1, "value": float(v), "wall_time": now + i}
        for key, values in metrics.items()
        for i, v in enumerate(values)
    ]
    if rows:
        session.execute(insert(Metric), rows)
    ordered = sorted(((r["key"], r["step"], r["value"]) for r in rows), key=lambda r: r[1])
    rule = metrics_service.keep_rule(session, run_id)
    session.add_all(metrics_service.summaries_of(run_id, ordered, rule))
    session.flush()


def _store_bytes(session, run_id: int, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file"
        path.write_bytes(data)
        artifacts_service.store_file(session=session, path=path, name=name, run_id=run_id)


# --- ablation studies (and the old augmentation studies) ------------------------------


def demo_test_labels(n_test: int = 20) -> np.ndarray:
    """The test labels of the fixture's demo-tiny (and of any demo of seed 0 and n_test)."""
    return _demo_test_labels(n_test).copy()


@lru_cache
def _demo_test_labels(n_test: int) -> np.ndarray:
    from worker.ml.datasets.demo import make_demo  # same seed, same test stream

    return make_demo(seed=0, n_train=10, n_test=n_test).y_test


def evaluation_of(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """A finetune's stored evaluation computed from its predictions, as the worker does."""
    k = len(class_names)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    per_class = {}
    for i, name in enumerate(class_names):
        support, predicted, hit = int(matrix[i].sum()), int(matrix[:, i].sum()), int(matrix[i, i])
        precision = hit / predicted if predicted else 0.0
        recall = hit / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    recalls = [s["recall"] for s in per_class.values() if s["support"]]
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(np.mean(recalls)),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(class_names),
    }


def study_predictions(n_right: int, n_test: int = 20) -> np.ndarray:
    """Test predictions whose first n_right are right (the rest one class off)."""
    y = demo_test_labels(n_test)
    return np.where(np.arange(n_test) < n_right, y, (y + 1) % 10)


def make_study_run(
    group: int,
    *,
    arm: str,
    seed: int,
    n_right: int,
    factor: str = "augmentation",
    legacy: bool = False,
    status: str = "succeeded",
    dataset: str = "demo-tiny",
    metrics: dict[str, list[float]] | None = None,
) -> int:
    """One finetune of a study whose first n_right test predictions are right; tagged as
    POST /api/ablations tags it (legacy: as the old augmentation studies did)."""
    from worker.ml.datasets.demo import CLASS_NAMES as DEMO_CLASSES

    predictions = study_predictions(n_right)
    result = finetune_result(list(DEMO_CLASSES))
    result["evaluation"] = evaluation_of(demo_test_labels(), predictions, list(DEMO_CLASSES))
    tags = (
        [f"augment:{arm}", f"seed:{seed}"]
        if legacy
        else [f"factor:{factor}", f"arm:{arm}", f"seed:{seed}"]
    )
    return make_run(
        "finetune",
        status,
        name=f"study: {arm}, seed {seed}",
        tags=tags,
        params={"seed": seed, **({"augment": arm == "on"} if legacy else {})},
        group_id=group,
        dataset=dataset,
        metrics=metrics or {"finetune/val_accuracy": [0.4, 0.5 + seed / 10]},
        artifacts={"predictions.npz": npz_bytes(predictions=predictions)},
        result=result if status == "succeeded" else None,
    )


def make_ablation(
    factor: str,
    right: dict[int, tuple[int, int]],
    *,
    metric: str = "accuracy",
    name: str = "study",
    dataset: str = "demo-tiny",
    legacy: bool = False,
    group_params: dict | None = None,
    running: dict[int, str] | None = None,
) -> int:
    """A study with, per seed, (baseline, treatment) test images right of 20; `running`
    maps a seed to the arm whose run is still training. Returns the group id."""
    from jobspec import ablations

    arms = [arm.name for arm in ablations.factor(factor).arms]
    params = {
        "factor": factor,
        "arms": arms,
        "base": {},
        "seeds": sorted(right),
        "split_seed": 0,
        "metric": metric,
        "metric_chosen": True,
        "parent_run_id": None,
        "warnings": [],
        **(group_params or {}),
    }
    if legacy:
        params = {"seeds": sorted(right)}
    group = make_group("augmentation_study" if legacy else "ablation_study", name, params)
    for seed, counts in sorted(right.items()):
        for arm, n_right in zip(arms, counts, strict=True):
            status = "running" if (running or {}).get(seed) == arm else "succeeded"
            make_study_run(
                group,
                arm=arm,
                seed=seed,
                n_right=n_right,
                factor=factor,
                legacy=legacy,
                status=status,
                dataset=dataset,
            )
    return group


def make_tune_study(
    params: dict, trials: list[tuple[int, str, float]], *, prefix: str = "tune", **fields
) -> int:
    """A finished tune run whose Optuna study ("<prefix>-<random>") holds completed trials
    (kernel size, optimizer, value), stored as the worker stores them; `fields` go to
    make_run."""
    import uuid

    import optuna
    from optuna.distributions import CategoricalDistribution

    from store.settings import get_settings

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    run_id = make_run("tune", params={**params, "study_name": name}, **fields)
    storage = optuna.storages.RDBStorage(get_settings().sqlalchemy_url)
    study = optuna.create_study(study_name=name, storage=storage)
    space = {
        "kernel_size": CategoricalDistribution(sorted({k for k, _, _ in trials})),
        "optimizer": CategoricalDistribution(sorted({o for _, o, _ in trials})),
    }
    for number, (kernel_size, optimizer, value) in enumerate(trials):
        trial_params = {"kernel_size": kernel_size, "optimizer": optimizer}
        study.add_trial(
            optuna.trial.create_trial(params=trial_params, distributions=space, value=value)
        )
        with session_scope() as session:
            trial = {"number": number, "params": trial_params, "state": "complete", "value": value}
            metrics_service.record_trial(
                session=session, run_id=run_id, trial=trial | {"intermediate": {}, "seconds": 1}
            )
    storage.engine.dispose()
    with session_scope() as session:
        runs_service.get_run(session, run_id).study_name = name
    return run_id


def owned_rows(run_ids: list[int]) -> dict[str, int]:
    """Rows that point at these runs, in every table with a column referencing runs (and the
    chunks of their files): what deleting them must leave at zero."""
    from sqlalchemy import func, select

    import store.models  # noqa: F401  (every table in the metadata)
    from store.artifacts.models import Artifact, ArtifactChunk
    from store.base import Base
    from store.runs.models import Run

    with session_scope() as session:
        counts = {}
        for table in Base.metadata.sorted_tables:
            for fk in table.foreign_keys:
                if fk.column.table.name == "runs":
                    where = fk.parent.in_(run_ids)
                    counts[f"{table.name}.{fk.parent.name}"] = session.scalar(
                        select(func.count()).select_from(table).where(where)
                    )
        counts["runs.id"] = session.scalar(select(func.count()).where(Run.id.in_(run_ids)))
        counts["runs.source_run_id"] = session.scalar(
            select(func.count()).where(Run.source_run_id.in_(run_ids))
        )
        files = select(Artifact.id).where(Artifact.run_id.in_(run_ids))
        counts["artifact_chunks"] = session.scalar(
            select(func.count()).where(ArtifactChunk.artifact_id.in_(files))
        )
    return counts


def table_sizes() -> dict[str, int]:
    """Rows per table, every table of the schema."""
    from sqlalchemy import func, select

    import store.models  # noqa: F401  (every table in the metadata)
    from store.base import Base

    with session_scope() as session:
        return {
            t.name: session.scalar(select(func.count()).select_from(t))
            for t in Base.metadata.sorted_tables
        }


def make_pruned_study(*, prefix: str = "pruned", **fields) -> int:
    """A finished tune run whose Optuna study holds trial 0 complete after 3 epochs and
    trial 1 pruned after 2, stored as the worker stores them (Optuna gives a pruned trial
    its last intermediate value); `fields` go to make_run."""
    import uuid

    import optuna
    from optuna.distributions import CategoricalDistribution

    from store.settings import get_settings

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    run_id = make_run("tune", params={"stage": "ae01", "study_name": name}, **fields)
    storage = optuna.storages.RDBStorage(get_settings().sqlalchemy_url)
    study = optuna.create_study(study_name=name, storage=storage, direction="minimize")
    space = {
        "kernel_size": CategoricalDistribution([3, 5]),
        "optimizer": CategoricalDistribution(["adam", "sgd"]),
    }
    rows = [
        (0, {"kernel_size": 3, "optimizer": "adam"}, "complete", {1: 0.5, 2: 0.35, 3: 0.3}),
        (1, {"kernel_size": 5, "optimizer": "sgd"}, "pruned", {1: 0.9, 2: 0.8}),
    ]
    for number, params, state, curve in rows:
        value = curve[max(curve)]
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=space,
                value=value if state == "complete" else None,
                state=getattr(optuna.trial.TrialState, state.upper()),
                intermediate_values=curve,
            )
        )
        trial = {"number": number, "params": params, "state": state, "value": value}
        with session_scope() as session:
            metrics_service.record_trial(
                session=session,
                run_id=run_id,
                trial=trial | {"intermediate": curve, "seconds": 2.5},
            )
    storage.engine.dispose()
    with session_scope() as session:
        runs_service.get_run(session, run_id).study_name = name
    return run_id
