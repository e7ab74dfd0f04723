"""An augmentation study's answer: did augmentation help, by how much, how sure are we."""

from __future__ import annotations

import io

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.compare import figures, stats
from store.artifacts import service as artifacts_service
from store.datasets import service as datasets_service
from store.errors import NotFound
from store.runs import metrics as metrics_service
from store.runs.models import FINISHED, Run, RunGroup
from store.settings import get_settings

ARMS = ("off", "on")
CURVES = (("finetune/val_accuracy", "val_accuracy", True), ("finetune/val_loss", "val_loss", False))
RULE = (
    "Difference = test accuracy with augmentation minus without, paired by seed. "
    "If its 95% confidence interval (Student t over seeds) lies above 0, augmentation helped; "
    "below 0, it hurt; if it contains 0, it did not clearly help. "
    "With fewer than two finished seed pairs no interval can be computed."
)


def get_group(session: Session, group_id: int) -> RunGroup:
    """A run group by id, or NotFound."""
    group = session.get(RunGroup, group_id)
    if group is None:
        raise NotFound("group", group_id)
    return group


def group_runs(session: Session, group_id: int) -> list[Run]:
    """The group's runs by id."""
    return list(session.scalars(select(Run).where(Run.group_id == group_id).order_by(Run.id)))


def arm_of(run: Run) -> str:
    """ "on" or "off", from the run's tag (or its augment parameter)."""
    for tag in run.tags or []:
        if tag in ("augment:on", "augment:off"):
            return tag.split(":")[1]
    return "on" if (run.params or {}).get("augment") else "off"


def seed_of(run: Run) -> int:
    """The seed the study gave the run."""
    return int((run.params or {}).get("seed", run.seed))


def study(*, session: Session, group_id: int) -> dict:
    """Curves per arm, test metrics per arm, the paired difference, McNemar per seed, verdict."""
    group = get_group(session, group_id)
    runs = group_runs(session, group_id)
    dataset = datasets_service.get(session, runs[0].dataset_id).name if runs else None
    pairs = _pairs(runs)
    diffs = [(p["on"]["accuracy"] - p["off"]["accuracy"]) * 100 for p in pairs]
    ci = stats.mean_ci(diffs)
    t_test = stats.paired_t(
        [p["on"]["accuracy"] for p in pairs], [p["off"]["accuracy"] for p in pairs]
    )
    n_seeds = len(group.params.get("seeds") or {seed_of(r) for r in runs})
    return {
        "group": {"id": group.id, "name": group.name, "kind": group.kind},
        "dataset": dataset,
        "runs": [_run_row(run) for run in runs],
        "running": any(run.status not in FINISHED for run in runs),
        "counts": {s: sum(r.status == s for r in runs) for s in {r.status for r in runs}},
        "curves": _curves(session, runs),
        "arms": {arm: _arm_summary([r for r in runs if arm_of(r) == arm]) for arm in ARMS},
        "pairs": [_pair_row(session, p, dataset_id=runs[0].dataset_id) for p in pairs],
        "difference": {
            "accuracy": ci,
            "balanced_accuracy": stats.mean_ci(
                [(p["on"]["balanced"] - p["off"]["balanced"]) * 100 for p in pairs]
            ),
            "t_test": t_test,
        },
        "verdict": verdict(dataset or "this data set", ci, t_test, len(pairs), n_seeds),
        "rule": RULE,
    }


def _evaluation(run: Run) -> dict | None:
    evaluation = (run.result or {}).get("evaluation") or {}
    if run.status != "succeeded" or "accuracy" not in evaluation:
        return None
    return evaluation


def _run_row(run: Run) -> dict:
    evaluation = _evaluation(run) or {}
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "arm": arm_of(run),
        "seed": seed_of(run),
        "accuracy": evaluation.get("accuracy"),
        "balanced_accuracy": evaluation.get("balanced_accuracy"),
        "progress": run.progress or {},
        "url": f"/runs/{run.id}",
    }


def _pairs(runs: list[Run]) -> list[dict]:
    """Seeds where both arms finished with an evaluation, in seed order."""
    by_seed: dict[int, dict] = {}
    for run in runs:
        evaluation = _evaluation(run)
        if evaluation is not None:
            by_seed.setdefault(seed_of(run), {})[arm_of(run)] = {
                "run": run,
                "accuracy": float(evaluation["accuracy"]),
                "balanced": float(evaluation.get("balanced_accuracy", evaluation["accuracy"])),
            }
    return [
        {"seed": seed, **arms} for seed, arms in sorted(by_seed.items()) if set(ARMS) <= set(arms)
    ]


def _arm_summary(runs: list[Run]) -> dict:
    evaluations = [e for e in map(_evaluation, runs) if e is not None]
    return {
        "runs": len(runs),
        "finished": len(evaluations),
        "accuracy": stats.mean_sd([e["accuracy"] * 100 for e in evaluations]),
        "balanced_accuracy": stats.mean_sd(
            [e.get("balanced_accuracy", e["accuracy"]) * 100 for e in evaluations]
        ),
    }


def _curves(session: Session, runs: list[Run]) -> list[dict]:
    keys = [key for key, _, _ in CURVES]
    series = {run.id: metrics_service.series(session, run.id, keys) for run in runs}
    out = []
    for key, title, percent in CURVES:
        arms = {}
        for arm in ARMS:
            per_seed = [series[r.id].get(key, []) for r in runs if arm_of(r) == arm]
            arms[arm] = band(per_seed)
        label = f"{title} (%)" if percent else title
        out.append({"metric": title, "figure": figures.bands(label, arms, percent=percent)})
    return out


def band(per_seed: list[list]) -> list[dict]:
    """Mean, min and max over seeds at each epoch (seeds that stopped early drop out)."""
    by_step: dict[int, list[float]] = {}
    for points in per_seed:
        for step, value in points:
            by_step.setdefault(step, []).append(value)
    return [
        {
            "step": step,
            "mean": float(np.mean(values)),
            "low": min(values),
            "high": max(values),
            "n": len(values),
        }
        for step, values in sorted(by_step.items())
    ]


def _pair_row(session: Session, pair: dict, *, dataset_id: int) -> dict:
    row = {
        "seed": pair["seed"],
        "off": {"id": pair["off"]["run"].id, "accuracy": pair["off"]["accuracy"]},
        "on": {"id": pair["on"]["run"].id, "accuracy": pair["on"]["accuracy"]},
        "difference": (pair["on"]["accuracy"] - pair["off"]["accuracy"]) * 100,
        "mcnemar": None,
        "problem": None,
    }
    try:
        y_true = test_labels(session, dataset_id)
        off = predictions(session, pair["off"]["run"].id)
        on = predictions(session, pair["on"]["run"].id)
    except (NotFound, OSError, KeyError, ValueError) as err:
        row["problem"] = f"no McNemar test: {err}"
        return row
    if not (len(off) == len(on) == len(y_true)):
        row["problem"] = "no McNemar test: predictions and test labels differ in length"
        return row
    # a = without augmentation, b = with: only_b are images augmentation fixed.
    row["mcnemar"] = stats.mcnemar(off == y_true, on == y_true)
    return row


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


def format_p(p: float) -> str:
    """A p-value as people read it."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def verdict(dataset: str, ci: dict, t_test: dict | None, n_pairs: int, n_seeds: int) -> dict:
    """The plain-sentence answer, and helped / hurt / unclear / too_few for its colour."""
    outcome = stats.judge(ci)
    if outcome == stats.TOO_FEW:
        text = (
            f"Not enough finished seed pairs yet to judge augmentation on {dataset}: "
            f"{n_pairs} of {n_seeds} done, at least 2 needed for a confidence interval."
        )
        return {"outcome": outcome, "text": text}
    word = {
        stats.HELPED: "helped",
        stats.HURT: "hurt",
        stats.UNCLEAR: "did not clearly help",
    }[outcome]
    text = (
        f"Augmentation {word} on {dataset}: {ci['mean']:+.1f} points test accuracy "
        f"(95% CI {ci['low']:+.1f} to {ci['high']:+.1f}, paired t-test {format_p(t_test['p'])}, "
        f"{n_pairs} seeds)."
    )
    return {"outcome": outcome, "text": text}
