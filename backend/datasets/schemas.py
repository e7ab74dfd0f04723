"""What the API shows of a data set."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jobspec import ablations


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
    # Lists and pages show some class names only (backend/datasets/listing.py): how many
    # there are, and how many `class_names` (and the counts) leave out.
    n_classes: int = Field(-1, description="Classes of the data set (class_names may show fewer)")
    classes_left_out: int = Field(0, description="Class names not in class_names (0: all shown)")
    imbalanced: bool = Field(
        False,
        description="Whether its largest training class is over the imbalance ratio "
        "times its smallest",
    )
    test_imbalanced: bool = Field(
        False,
        description="Whether its largest test class is over the imbalance ratio times its "
        "smallest (what a study's 'auto' metric picks balanced accuracy on: on a balanced "
        "test set it equals accuracy)",
    )

    @model_validator(mode="after")
    def _counted(self) -> DatasetRead:
        """Read from a whole record: every class is in class_names."""
        if self.n_classes < 0:
            self.n_classes = len(self.class_names)
            self.imbalanced = ablations.imbalanced(self.train_counts)
            self.test_imbalanced = ablations.imbalanced(self.test_counts)
        return self
