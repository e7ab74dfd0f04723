"""Workers that said they are alive: for the queue panel and dead-worker detection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from jobspec.scheduling import Lane
from store.base import Base
from store.timeutil import utcnow
from store.vocabulary import known_values, vocabulary_column


class WorkerRecord(Base):
    """One worker process (host + pid), its device and the run it is on."""

    __tablename__ = "workers"
    __table_args__ = (known_values("lane", Lane),)  # migration 0012

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    device: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    current_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    # What it can take (migration 0012): its lane, and its GPU's memory (None: no GPU).
    lane: Mapped[Lane] = mapped_column(
        vocabulary_column(Lane), default=Lane.TRAINING, server_default=Lane.TRAINING.value
    )
    gpu_memory_mb: Mapped[int | None] = mapped_column(Integer)
