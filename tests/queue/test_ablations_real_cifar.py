"""Every ablation factor end to end on real CIFAR-10 pictures made imbalanced: a pretrain,
then one short study per factor through the real worker, broker and PostgreSQL, each
ending in a verdict page's answer. Skips when ../shared/data lacks the subset."""

from __future__ import annotations

import numpy as np
import pytest

from jobspec import ablations
from store.db import session_scope
from store.runs import ablations as ablation_launcher
from store.runs import launch as launcher
from store.runs.models import Run
from store.runs.schemas import AblationCreate, RunCreate
from tests.stack import REPO_ROOT, wait_for

SUBSET = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg-subset.zip"
NAME = "cifar-imbalanced"
TRAIN_PER_CLASS = (60, 48, 39, 31, 25, 20, 16, 13, 11, 10)  # 6:1, the rarest last
TEST_PER_CLASS = 10  # a balanced test set, small: evaluating it is most of a tiny run
STAGE = {"epochs": 1, "batch_size": 64}
FINETUNE = {"epochs": 1, "batch_size": 64}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SUBSET.exists(), reason=f"{SUBSET} is absent (real CIFAR-10 subset)"),
    # One stack is enough (the faults are test_faults'); the real parts: Redis + PostgreSQL.
    pytest.mark.parametrize("stack", ["redis-postgres"], indirect=True),
]


def _imbalanced_cifar():
    from worker.ml.datasets.dataset import Dataset
    from worker.ml.datasets.load import load_dataset

    data = load_dataset(str(SUBSET))
    keep_train = np.concatenate(
        [np.flatnonzero(data.y_train == c)[:n] for c, n in enumerate(TRAIN_PER_CLASS)]
    )
    keep_test = np.concatenate(
        [np.flatnonzero(data.y_test == c)[:TEST_PER_CLASS] for c in range(data.num_classes)]
    )
    return Dataset(
        name=NAME,
        x_train=data.x_train[keep_train],
        y_train=data.y_train[keep_train],
        x_test=data.x_test[keep_test],
        y_test=data.y_test[keep_test],
        class_names=data.class_names,
        source="cifar10-jpeg-subset",
    )


def _status(run_ids: list[int]) -> dict[int, str]:
    with session_scope() as session:
        return {run.id: run.status for run in session.query(Run).filter(Run.id.in_(run_ids))}


def test_one_short_study_per_factor_completes_on_imbalanced_cifar(stack):
    from backend.groups import ablation
    from worker.datasets import register

    register(_imbalanced_cifar(), name=NAME)
    with session_scope() as session:
        pretrain = launcher.launch(
            session=session,
            run_in=RunCreate(
                kind="pretrain",
                dataset=NAME,
                params={"ae01": STAGE, "ae02": STAGE, "ae03": STAGE, "bn_momentum": 0.9},
            ),
        )[0].id
        groups = {}
        for name in ablations.FACTORS:
            group = ablation_launcher.launch_ablation(
                session=session,
                study_in=AblationCreate(
                    dataset=NAME,
                    factor=name,
                    params={**FINETUNE, "encoder": "single", "bn_momentum": 0.9},
                    parent_run_id=pretrain,
                    seeds=[0, 1],  # the fewest a study takes: each study is judged
                ),
            )
            groups[name] = group.id
            # The study shares the pretrain's split, so nothing to warn about.
            assert group.params["warnings"] == [], group.params["warnings"]
            # imbalanced training classes, a balanced test set: there balanced accuracy equals
            # accuracy, so the study's default metric is accuracy (jobspec.ablations)
            assert group.params["metric"] == "accuracy"
        run_ids = [r.id for r in session.query(Run).filter(Run.group_id.in_(groups.values()))]
    assert len(run_ids) == 2 * 2 * len(ablations.FACTORS)

    wait_for(
        lambda: set(_status(run_ids).values()) <= {"succeeded", "failed", "cancelled"},
        timeout=600,
        what="every study run to finish",
    )
    assert set(_status(run_ids).values()) == {"succeeded"}, _status(run_ids)

    with session_scope() as session:
        answers = {
            name: ablation.study(session=session, group_id=gid) for name, gid in groups.items()
        }
        runs = session.query(Run).filter(Run.id.in_(run_ids)).all()
        pretrain_split = session.get(Run, pretrain).result["split"]["fingerprint"]
        splits = {run.result["split"]["fingerprint"] for run in runs}
    assert splits == {pretrain_split}  # one split for every arm, seed and factor
    for name, answer in answers.items():
        assert answer["metric"]["name"] == "accuracy"
        outcome = answer["verdict"]["outcome"]
        assert outcome in {"helped", "hurt", "inconclusive", "chance"}, (name, answer["verdict"])
    # The arms differ in the factor alone.
    for run in runs:
        factor = ablations.factor(next(t[7:] for t in run.tags if t.startswith("factor:")))
        arm = next(t[4:] for t in run.tags if t.startswith("arm:"))
        assert run.params["split_seed"] == 0
        if factor.name == "pretraining" and arm == "scratch":
            assert run.params["encoder"] == "scratch" and run.parent_run_id is None
            assert run.params["architecture"] == "single"
