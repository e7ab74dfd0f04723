"""Data sets: what they hold; their arrays are an artifact (dataset_id) any worker can fetch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from jobspec.status import ImportState, sql_in
from store.base import Base
from store.text_column import ShownCounts, ShownList, ShownString, ShownText
from store.timeutil import utcnow
from store.vocabulary import known_values, vocabulary_column


class DatasetRecord(Base):
    """One imported or generated data set."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(ShownString(200), unique=True)
    source: Mapped[str] = mapped_column(ShownString(40))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    image_shape: Mapped[list[int]] = mapped_column(JSON)
    class_names: Mapped[list[str]] = mapped_column(ShownList)
    train_counts: Mapped[dict[str, int]] = mapped_column(ShownCounts)
    test_counts: Mapped[dict[str, int]] = mapped_column(ShownCounts)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


ACTIVE = text(sql_in("state", ImportState.active()))  # one active import per name


class DatasetImport(Base):
    """One import of a data set, from upload (or download) to done or failed.

    The web creates it queued with the upload; a worker claims it (running), beats
    heartbeat_at while it parses, and finishes it; the upkeep fails it when its worker
    went silent. Its name is taken while it is queued or running."""

    __tablename__ = "dataset_imports"
    # ids are never reused (SQLite would reuse the largest after a purge): a client polling
    # an old import must not see a newer one
    __table_args__ = (
        # two uploads racing for one name: the database lets one in
        Index(
            "uq_dataset_imports_active_name",
            "name",
            unique=True,
            sqlite_where=ACTIVE,
            postgresql_where=ACTIVE,
        ),
        known_values("state", ImportState),  # migration 0007
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(ShownString(200))
    file_name: Mapped[str] = mapped_column(ShownString(255))
    source: Mapped[str | None] = mapped_column(ShownString(40))  # "cifar10": the Keras download
    resize: Mapped[bool] = mapped_column(Boolean, default=False)
    upload_artifact_id: Mapped[int | None] = mapped_column(
        ForeignKey("artifacts.id", ondelete="SET NULL")
    )
    state: Mapped[ImportState] = mapped_column(vocabulary_column(ImportState), index=True)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    message: Mapped[str | None] = mapped_column(ShownText)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
