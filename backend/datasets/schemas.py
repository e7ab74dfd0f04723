"""What the API shows of a data set."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DatasetRead(BaseModel):
    """A data set's summary (its arrays are downloaded by workers, not shown)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    source: str
    fingerprint: str
    n_train: int
    n_test: int
    image_shape: list[int]
    class_names: list[str]
    train_counts: dict[str, int]
    test_counts: dict[str, int]
    created_at: datetime
