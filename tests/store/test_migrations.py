"""Migrations over data written by the previous schema: imports pending when 0003 runs."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config


def _artifact(conn, artifact_id: int, name: str, kind: str, data: bytes) -> None:
    now = datetime.now(UTC)
    conn.execute(
        sa.text(
            "INSERT INTO artifacts (id, name, kind, size, created_at) "
            "VALUES (:id, :name, :kind, :size, :now)"
        ),
        {"id": artifact_id, "name": name, "kind": kind, "size": len(data), "now": now},
    )
    conn.execute(
        sa.text("INSERT INTO artifact_chunks (artifact_id, seq, data) VALUES (:id, 0, :data)"),
        {"id": artifact_id, "data": data},
    )


def test_0003_adopts_pending_uploads_and_drops_the_old_error_files(url):
    config = alembic_config(url)
    command.upgrade(config, "0002")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        _artifact(conn, 5, "cats/cats.npz", "upload", b"npz bytes")
        _artifact(conn, 6, "cats/again.npz", "upload", b"second upload, same name")
        _artifact(conn, 7, "import-3.error", "import-error", b"an old failure")
        _artifact(conn, 8, "weights.h5", "weights", b"a run's file stays")

    command.upgrade(config, "head")

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, name, file_name, state, upload_artifact_id FROM dataset_imports")
        ).all()
        assert [tuple(r) for r in rows] == [(5, "cats", "cats.npz", "queued", 5)]
        left = conn.execute(sa.text("SELECT id FROM artifacts ORDER BY id")).scalars().all()
        assert left == [5, 8]
        chunks = conn.execute(sa.text("SELECT artifact_id FROM artifact_chunks")).scalars()
        assert sorted(chunks) == [5, 8]
    # and back down and up again
    command.downgrade(config, "0002")
    command.upgrade(config, "head")
    engine.dispose()


def test_0005_replays_old_runs_to_find_the_epoch_each_one_keeps(url):
    """Runs stored before 0005 get kept-epoch values: early stopping's restored epoch for a
    finetune (its monitor from the params), the last epoch otherwise."""
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    empty = "{}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', :e, :e, :now)"
            ),
            {"e": empty, "now": now},
        )
        stopping = '{"early_stopping": {"monitor": "val_loss"}}'
        for run_id, kind, params in ((1, "finetune", stopping), (2, "pretrain", empty)):
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                    "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
                    "(:id, :kind, 'r', '[]', 'succeeded', :params, 0, 1, :now, false, :e, :e, "
                    ":e, 1)"
                ),
                {"id": run_id, "kind": kind, "params": params, "e": empty, "now": now},
            )
            stage = "finetune" if kind == "finetune" else "ae01"
            epochs = [(1.0, 0.5), (0.8, 0.55), (0.9, 0.6)]
            for step, (loss, acc) in enumerate(epochs, start=1):
                for name, value in (("val_loss", loss), ("val_accuracy", acc)):
                    conn.execute(
                        sa.text(
                            "INSERT INTO metrics (run_id, key, step, value, wall_time) "
                            "VALUES (:r, :k, :s, :v, 0)"
                        ),
                        {"r": run_id, "k": f"{stage}/{name}", "s": step, "v": value},
                    )
            for name, goal, best, best_step in (
                ("val_loss", "min", 0.8, 2),
                ("val_accuracy", "max", 0.6, 3),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO metric_summaries (run_id, key, last_value, last_step, "
                        "best_value, best_step, goal) VALUES (:r, :k, :lv, 3, :bv, :bs, :g)"
                    ),
                    {
                        "r": run_id,
                        "k": f"{stage}/{name}",
                        "lv": epochs[-1][0 if name == "val_loss" else 1],
                        "bv": best,
                        "bs": best_step,
                        "g": goal,
                    },
                )

    command.upgrade(config, "head")

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT run_id, key, kept_value, kept_step FROM metric_summaries "
                "ORDER BY run_id, key"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, "finetune/val_accuracy", 0.55, 2),  # val_loss's best epoch: the restored model
        (1, "finetune/val_loss", 0.8, 2),
        (2, "ae01/val_accuracy", 0.6, 3),  # a pretrain stage keeps its last epoch
        (2, "ae01/val_loss", 0.9, 3),
    ]


def test_a_table_rebuilt_by_sqlite_batch_mode_keeps_the_rows_that_reference_it(tmp_path):
    """SQLite alters a table by copying it; with foreign keys on, dropping the old copy
    would cascade into the metrics of every run. Migrations (env.py) run with them off:
    0006's downgrade rebuilds the runs table and the run's metrics stay."""
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', '{}', '{}', :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                "created_at, cancel_requested, versions, progress, result, attempts) VALUES "
                "(1, 'finetune', 'r', '[]', 'succeeded', '{}', 0, 1, :now, 0, '{}', '{}', "
                "'{}', 1)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO metrics (run_id, key, step, value, wall_time) "
                "VALUES (1, 'finetune/loss', 1, 0.5, 0)"
            )
        )
    command.downgrade(config, "0005")  # drops columns of runs: a table rebuild on SQLite
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar() == 1
