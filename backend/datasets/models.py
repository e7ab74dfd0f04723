"""Data sets: what they hold; their arrays are an artifact (dataset_id) any worker can fetch."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from backend.db import Base
from backend.timeutil import utcnow


class DatasetRecord(Base):
    """One imported or generated data set."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(40))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    image_shape: Mapped[list] = mapped_column(JSON)
    class_names: Mapped[list] = mapped_column(JSON)
    train_counts: Mapped[dict] = mapped_column(JSON)
    test_counts: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
