"""Per-image evidence of a study: which test images each run got right, McNemar per seed
and the test pooled over seeds."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy.orm import Session

from backend.compare import stats
from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.settings import get_settings

PROBLEMS = (NotFound, OSError, KeyError, ValueError)

MCNEMAR_CAVEAT = (
    "McNemar's test per seed asks whether these two networks differ on this test set "
    "(exact binomial test on the images only one of them got right). A small p says the two "
    "trained networks disagree; it is not a test of the factor, which needs the spread over "
    "seeds (the verdict above)."
)


def pooled_rule(metric: str) -> str:
    """How the pooled tests read, said on the page (and whether they speak of the metric)."""
    rule = (
        "Sign-flip permutation test: under 'the factor does nothing' each seed's difference "
        "is as likely positive as negative; p is the share of all 2^n sign patterns whose "
        "mean is at least as far from 0 as the observed one (two-sided, exact), so with n "
        "seeds p cannot go below 2/2^n. "
        "Pooled McNemar (Cochran–Mantel–Haenszel, one stratum per seed): b = test images only "
        "the baseline got right, c = only the treatment, summed over seeds; "
        "χ² = (Σ(b − c))² / Σ(b + c) with 1 degree of freedom, shown without and with the "
        "continuity correction (|Σ(b − c)| − 1)² / Σ(b + c). It treats every image of every "
        "seed as evidence, so it is far more confident than the seed-level interval."
    )
    if metric != "accuracy":
        rule += (
            " Per-image correctness means 'right on that test image': this test is about "
            "accuracy, not the study's metric."
        )
    return rule


def correctness(session: Session, run_id: int, y_true: np.ndarray) -> np.ndarray:
    """Which test images the run classified right; ValueError when lengths differ."""
    predicted = predictions(session, run_id)
    if len(predicted) != len(y_true):
        raise ValueError("predictions and test labels differ in length")
    return predicted == y_true


def per_seed(session: Session, pairs: list[dict], dataset_id: int) -> None:
    """Adds "mcnemar" (or "problem") to each pair and keeps each pair's correctness
    (baseline, treatment) under "_correct" for the pooled test."""
    if not pairs:
        return
    try:
        y_true = test_labels(session, dataset_id)
    except PROBLEMS as err:
        for pair in pairs:
            pair.update(mcnemar=None, problem=f"no McNemar test: {err}")
        return
    for pair in pairs:
        pair.update(mcnemar=None, problem=None)
        try:
            base = correctness(session, pair["baseline"]["id"], y_true)
            treat = correctness(session, pair["treatment"]["id"], y_true)
        except PROBLEMS as err:
            pair["problem"] = f"no McNemar test: {err}"
            continue
        # a = baseline, b = treatment: only_b are images the treatment alone got right.
        pair["mcnemar"] = stats.mcnemar(base, treat)
        pair["_correct"] = (base, treat)


def pooled(pairs: list[dict], diffs: list[float], metric: str) -> dict:
    """The tests pooled over seeds: sign flips of the differences, CMH McNemar of images."""
    strata = [pair.pop("_correct") for pair in pairs if "_correct" in pair]
    return {
        "sign_flip": stats.sign_flip(diffs),
        "mcnemar": stats.pooled_mcnemar(strata),
        "mcnemar_seeds": len(strata),
        "about_accuracy": metric != "accuracy",
        "rule": pooled_rule(metric),
    }


def predictions(session: Session, run_id: int) -> np.ndarray:
    """The test-set predictions a finetune run stored (predictions.npz)."""
    artifact = artifacts_service.run_artifact(session, run_id, "predictions.npz")
    data = b"".join(artifacts_service.iter_chunks(session, artifact.id))
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return np.asarray(npz["predictions"]).astype(np.int64).ravel()


def test_labels(session: Session, dataset_id: int) -> np.ndarray:
    """The data set's test labels, from the local cache (fetched once per fingerprint)."""
    path = datasets_service.fetch_to_cache(
        session=session, dataset_id=dataset_id, cache_dir=get_settings().cache_dir
    )
    with np.load(path, allow_pickle=False) as npz:
        return np.asarray(npz["y_test"]).astype(np.int64).ravel()
