"""Alembic environment: our metadata, our version table (Optuna has its own)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.schema import SchemaItem, Table

from store import models  # noqa: F401  (fills the metadata)
from store.base import Base
from store.db import VERSION_TABLE, make_engine, no_request_timeouts

config = context.config


def ours(
    obj: SchemaItem,
    name: str | None,
    type_: str,
    reflected: bool,
    compare_to: SchemaItem | None,
) -> bool:
    """Only our tables: Optuna keeps its studies in the same database, and autogenerate
    must never propose dropping them."""
    table: Table | None = obj if isinstance(obj, Table) else getattr(obj, "table", None)
    if not reflected and _for_another_database(obj):
        return False  # declared for one database alone (ddl_if): not missing on the other
    return table is None or table.name in Base.metadata.tables


def _for_another_database(obj: SchemaItem) -> bool:
    """Is this model object created on other databases only (`.ddl_if(dialect=...)`)?"""
    rule = getattr(obj, "_ddl_if", None)
    if rule is None or rule.dialect is None:
        return False
    wanted = [rule.dialect] if isinstance(rule.dialect, str) else list(rule.dialect)
    return context.get_context().dialect.name not in wanted


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no sqlalchemy.url: run migrations through store.db.upgrade_schema")
    engine = make_engine(url)
    with engine.connect() as connection:
        no_request_timeouts(connection)  # a migration may rewrite a big table
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table by copy, drop and rename: with foreign keys on, the
            # drop would cascade into every row that references it (a run's metrics).
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            version_table=VERSION_TABLE,
            include_object=ours,
            render_as_batch=True,  # SQLite alters tables by copying them
        )
        with context.begin_transaction():
            if not sqlite:
                # Deferred triggers (runs_version's, 0014) fire at once while migrating: an
                # event still pending from one revision's UPDATE of runs would make a later
                # revision's CREATE INDEX or ALTER of runs in this transaction fail
                # ("pending trigger events").
                connection.exec_driver_sql("SET CONSTRAINTS ALL IMMEDIATE")
            context.run_migrations()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
