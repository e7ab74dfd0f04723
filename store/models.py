"""Every ORM model, imported once so the metadata is complete (Alembic, tests)."""

from store.artifacts.models import Artifact, ArtifactChunk
from store.datasets.models import DatasetImport, DatasetRecord
from store.notify.models import OutboxEvent, WebhookDelivery
from store.runs.changes import RunsVersion
from store.runs.models import (
    Metric,
    MetricSummary,
    Run,
    RunAttempt,
    RunGroup,
    RunParam,
    RunSample,
    TuneTrial,
)
from store.workers.models import WorkerRecord

__all__ = [
    "Artifact",
    "ArtifactChunk",
    "DatasetImport",
    "DatasetRecord",
    "Metric",
    "MetricSummary",
    "OutboxEvent",
    "Run",
    "RunAttempt",
    "RunGroup",
    "RunParam",
    "RunSample",
    "RunsVersion",
    "TuneTrial",
    "WebhookDelivery",
    "WorkerRecord",
]
