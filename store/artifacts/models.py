"""Files stored in SQL, in chunks, so any worker or the web can stream them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base
from store.timeutil import utcnow

CHUNK_BYTES = 1024 * 1024


class Artifact(Base):
    """One file: weights, a full model, pictures' data, predictions, a data set's arrays."""

    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_artifacts_run_id_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # A run's file still streaming in (store.runs.staging): run_id stays NULL, so no
    # listing or download sees it, until its attempt publishes it. No foreign key (SQLite
    # adds one only by rebuilding the table): the upkeep's sweep drops a deleted run's.
    staged_for_run_id: Mapped[int | None] = mapped_column(Integer, index=True)
    staged_attempt: Mapped[int | None] = mapped_column(Integer)


class ArtifactChunk(Base):
    """Up to CHUNK_BYTES of an artifact; read in order of seq."""

    __tablename__ = "artifact_chunks"

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
