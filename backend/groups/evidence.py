"""Per-image evidence of a study: which test images each run got right, the per-image
tests (each labelled with what it tests, none of them a test of the factor) and the test-set
bootstrap beside the seed interval."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy.orm import Session

from backend.compare import image_tests, stats
from backend.groups import bootstrap
from jobspec import ablations
from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.settings import get_settings

PROBLEMS = (NotFound, OSError, KeyError, ValueError)
NOT_THE_FACTOR = image_tests.NOT_THE_FACTOR

MCNEMAR_CAVEAT = (
    "McNemar's test per seed asks whether these two networks differ on this test set "
    "(exact binomial test on the images only one of them got right). A small p says the two "
    "trained networks disagree; it is not a test of the factor, which needs the spread over "
    "seeds (the verdict above)."
)
TESTS = {
    "mcnemar": (
        "McNemar pooled over seeds (matched pairs, one stratum per seed-and-image): summed "
        "over seeds, did the treatment networks get more test images right than the "
        "baseline ones? Every image of every seed is counted as an independent pair, and the "
        "same image once per seed."
    ),
    "seed_cmh": (
        "Cochran–Mantel–Haenszel over seeds (one stratum per seed: arm × right/wrong over "
        "that seed's images): do the two arms' accuracies on this test set differ, seed by "
        "seed pooled? Stratified per seed, but every image is still a replicate and the "
        "arms' image pairing is ignored."
    ),
}


def pooled_rule(metric: str) -> str:
    """How the per-image tests read, said on the page (and whether they speak of the metric)."""
    rule = (
        "Pooled McNemar: b = test images only the baseline got right, c = only the "
        "treatment, summed over seeds; χ² = (Σ(b − c))² / Σ(b + c) with 1 degree of freedom, "
        "without and with the continuity correction (|Σ(b − c)| − 1)² / Σ(b + c). "
        "Cochran–Mantel–Haenszel over seeds: one 2×2 table per seed (arm × right/wrong), "
        "χ² = (Σ(a − E))² / ΣV with the hypergeometric mean E and variance V of the "
        "baseline's right count, without and with a 0.5 correction. Both treat every test "
        "image as a replicate, so they are far more confident than the seed interval and "
        "answer a different question: whether these trained networks differ on this test "
        "set, not whether the factor helps."
    )
    if metric != "accuracy":
        rule += (
            " Per-image correctness means 'right on that test image': these tests are about "
            "accuracy, not the study's metric."
        )
    return rule


def per_seed(session: Session, pairs: list[dict], dataset_id: int) -> np.ndarray | None:
    """Adds "mcnemar" (or "problem") to each pair and keeps each pair's predictions
    (baseline, treatment) under "_predicted"; returns the test labels (None without)."""
    if not pairs:
        return None
    try:
        y_true = test_labels(session, dataset_id)
    except PROBLEMS as err:
        for pair in pairs:
            pair.update(mcnemar=None, problem=f"no McNemar test: {err}")
        return None
    for pair in pairs:
        pair.update(mcnemar=None, problem=None)
        try:
            base = _checked(predictions(session, pair["baseline"]["id"]), y_true)
            treat = _checked(predictions(session, pair["treatment"]["id"]), y_true)
        except PROBLEMS as err:
            pair["problem"] = f"no McNemar test: {err}"
            continue
        # a = baseline, b = treatment: only_b are images the treatment alone got right.
        pair["mcnemar"] = image_tests.mcnemar(base == y_true, treat == y_true)
        pair["_predicted"] = (base, treat)
        pair["_correct"] = (base == y_true, treat == y_true)
    return y_true


def _checked(predicted: np.ndarray, y_true: np.ndarray) -> np.ndarray:
    if len(predicted) != len(y_true):
        raise ValueError("predictions and test labels differ in length")
    return predicted


def pooled(pairs: list[dict], diffs: list[float], metric: str) -> dict:
    """The per-image tests over seeds, each with what it tests and the sentence that it does
    not test the factor; the sign-flip test over seeds (a test of the factor) beside them.
    The last reader of the pairs' arrays: it takes them out (the pairs become JSON)."""
    strata = [pair.pop("_correct") for pair in pairs if "_correct" in pair]
    for pair in pairs:
        pair.pop("_predicted", None)
    return {
        "sign_flip": stats.sign_flip(diffs),
        "mcnemar": _labelled(image_tests.pooled_mcnemar(strata), "mcnemar"),
        "seed_cmh": _labelled(image_tests.seed_cmh(strata), "seed_cmh"),
        "mcnemar_seeds": len(strata),
        "about_accuracy": metric != "accuracy",
        "not_the_factor": NOT_THE_FACTOR,
        "rule": pooled_rule(metric),
    }


def _labelled(test: dict | None, name: str) -> dict | None:
    return (
        None if test is None else {**test, "tests": TESTS[name], "not_the_factor": NOT_THE_FACTOR}
    )


def test_set(
    pairs: list[dict], y_true: np.ndarray | None, *, metric: str, diff: dict, dataset
) -> dict:
    """The bootstrap over test images beside the seed interval, or why there is none."""
    found = [pair["_predicted"] for pair in pairs if "_predicted" in pair]
    if y_true is None or dataset is None or not found or not y_true.size:
        problems = [pair["problem"] for pair in pairs if pair.get("problem")]
        why = problems[0].removeprefix("no McNemar test: ") if problems else None
        return {"available": False, "why": why or "no stored test predictions to resample"}
    if len(found) < len(pairs):
        return {"available": False, "why": "some seeds have no stored test predictions"}
    names = list(dataset.class_names or [])
    rarest = ablations.rarest_classes(dict(dataset.train_counts or {}))
    rare = [names.index(c) for c in rarest if c in names]
    if metric == "minority_recall" and not rare:
        return {"available": False, "why": "the rarest classes are unknown"}
    labels = [y_true, *(p for pair in found for p in pair)]
    # The class count sizes one-hot matrices: a stored value past the data set's classes
    # (a corrupt file) must not size them.
    found_max = max((int(v.max()) + 1 for v in labels if v.size), default=1)
    classes = len(names) or min(found_max, get_settings().max_classes)
    if any(v.size and (int(v.min()) < 0 or int(v.max()) >= classes) for v in labels):
        return {"available": False, "why": "a stored prediction is not a class"}
    means = bootstrap.mean_differences(metric, y_true, found, classes=classes, rare=rare)
    return {"available": True, "why": None, **bootstrap.interval(means, diff)}


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
