"""Migration 0013 over runs stored by 0012's schema: every run's parameters become rows of
run_params (flattened, numbers and flags and text kept as store/runs/values.py keeps them),
the table's indexes exist; down drops them and up again fills them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from store.db import alembic_config
from store.runs import values

PARAMS = {
    1: {"learning_rate": 0.01, "augment": True, "augmentation": {"zoom_range": 0.1}},
    2: {"optimizer": "adam", "kernel_sizes": [3, 5], "split_seed": None, "runtime": {}},
    3: {},
}


def _fill(engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO datasets (id, name, source, fingerprint, n_train, n_test, "
                "image_shape, class_names, train_counts, test_counts, created_at) VALUES "
                "(1, 'd', 'demo', 'f', 1, 1, '[]', '[]', '{}', '{}', :now)"
            ),
            {"now": now},
        )
        for run_id, params in PARAMS.items():
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, kind, name, tags, status, params, seed, dataset_id, "
                    "created_at, cancel_requested, versions, progress, result, attempts) "
                    "VALUES (:id, 'finetune', 'r', '[]', 'succeeded', :params, 0, 1, :now, "
                    "false, '{}', '{}', '{}', 1)"
                ),
                {"id": run_id, "params": json.dumps(params), "now": now},
            )


def _kept(engine) -> set[tuple]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, key, num_value, text_value FROM run_params"))
        return {tuple(row) for row in rows}


def _index_names(engine) -> set[str]:
    sqlite = engine.dialect.name == "sqlite"
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if sqlite
        else "SELECT indexname FROM pg_indexes"
    )
    with engine.connect() as conn:
        return set(conn.execute(sa.text(query)).scalars())


def test_0013_keeps_every_runs_params_as_rows_and_indexes_them(url):
    config = alembic_config(url)
    command.upgrade(config, "0012")
    engine = sa.create_engine(url)
    _fill(engine)
    command.upgrade(config, "0013")
    expected = {
        (row["run_id"], row["key"], row["num_value"], row["text_value"])
        for run_id, params in PARAMS.items()
        for row in values.rows_of(run_id, params)
    }
    assert _kept(engine) == expected
    assert (1, "augmentation.zoom_range", 0.1, None) in expected
    assert (1, "augment", 1.0, "true") in expected
    assert (2, "kernel_sizes", None, "[3, 5]") in expected
    assert (2, "runtime", None, "{}") in expected  # an empty group is a leaf
    assert not any(key == "split_seed" for _, key, _, _ in expected)  # None: no row
    indexes = {ix["name"] for ix in sa.inspect(engine).get_indexes("run_params")}
    assert {"ix_run_params_key_num", "ix_run_params_key_text"} <= indexes
    assert "ix_metric_summaries_key_value" in _index_names(engine)  # an expression index

    command.downgrade(config, "0012")
    assert "run_params" not in sa.inspect(engine).get_table_names()
    assert "ix_metric_summaries_key_value" not in _index_names(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 3
    command.upgrade(config, "head")
    assert _kept(engine) == expected
    engine.dispose()
