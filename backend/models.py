"""Every ORM model, imported once so the metadata is complete (Alembic, tests)."""

from backend.artifacts.models import Artifact, ArtifactChunk
from backend.datasets.models import DatasetImport, DatasetRecord
from backend.runs.models import Metric, MetricSummary, Run, RunAttempt, RunGroup, TuneTrial
from backend.workers.models import WorkerRecord

__all__ = [
    "Artifact",
    "ArtifactChunk",
    "DatasetImport",
    "DatasetRecord",
    "Metric",
    "MetricSummary",
    "Run",
    "RunAttempt",
    "RunGroup",
    "TuneTrial",
    "WorkerRecord",
]
