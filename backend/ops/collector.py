"""The store's gauges for Prometheus, collected at scrape time (a custom Collector: every
scrape reads the database once, so every web process answers the same numbers)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

from backend.ops import gauges

log = logging.getLogger(__name__)


def _gauge(
    name: str, doc: str, labels: Iterable[str], values: dict, *, one_label: bool = False
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric([key] if one_label else list(key), float(value))
    return family


def families(snap: gauges.Snapshot) -> list[Metric]:
    """The snapshot as metric families (names and labels documented in the README)."""
    return [
        _gauge("stacklab_runs", "Runs by state and kind", ["state", "kind"], snap.runs),
        *_queue(snap),
        *_workers(snap),
        _gauge(
            "stacklab_epoch_duration_seconds",
            "Median duration of the last epoch of each stage, over the newest runs",
            ["kind", "model", "device"],
            snap.epoch_seconds,
        ),
        _gauge(
            "stacklab_images_per_second",
            "Median training images/s of the last epoch of each stage, over the newest runs",
            ["kind", "model", "device"],
            snap.images_per_second,
        ),
        _gauge(
            "stacklab_imports",
            "Data set imports by state (finished: a week)",
            ["state"],
            snap.imports,
            one_label=True,
        ),
        _gauge(
            "stacklab_import_duration_seconds",
            "Duration of the newest finished data set imports: median (0.5), 0.9, longest (1)",
            ["quantile"],
            snap.import_seconds,
            one_label=True,
        ),
        _gauge(
            "stacklab_webhook_deliveries",
            "Webhook deliveries by state (a week)",
            ["state"],
            snap.deliveries,
            one_label=True,
        ),
    ]


def _queue(snap: gauges.Snapshot) -> list[Metric]:
    depth = GaugeMetricFamily("stacklab_queue_depth", "Runs queued (waiting for a worker)")
    depth.add_metric([], snap.queue_depth)
    oldest = GaugeMetricFamily(
        "stacklab_queue_oldest_wait_seconds",
        "How long the longest-queued run has waited, by the database's clock (0: none)",
    )
    oldest.add_metric([], snap.oldest_wait)
    return [depth, oldest]


def _workers(snap: gauges.Snapshot) -> list[Metric]:
    return [
        _gauge(
            f"stacklab_workers_{state}",
            doc,
            ["lane"],
            {lane: n for (s, lane), n in snap.workers.items() if s == state},
            one_label=True,
        )
        for state, doc in (
            ("online", "Workers heard within two heartbeats"),
            ("busy", "Online workers on a run"),
            ("silent", "Workers listed (heard within the stale window) but silent"),
        )
    ]


class StoreCollector(Collector):
    """Reads the store at each scrape; a store that does not answer gives
    stacklab_store_up 0 and no other store series (never a failed scrape)."""

    def __init__(self, session_scope: Callable[[], AbstractContextManager[Session]]) -> None:
        self.session_scope = session_scope

    def describe(self) -> list[Metric]:
        return []  # nothing read at registration; names are checked by the tests

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("stacklab_store_up", "1 when the scrape could read the store")
        try:
            with self.session_scope() as session:
                snap = gauges.read(session)
        except Exception as err:  # the store may be restarting: say so, do not fail
            log.warning("metrics: the store did not answer: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snap)
