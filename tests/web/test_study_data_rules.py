"""What a study's page says about its data (issue 23): how many validation images its runs'
pretrain trained on, and early stopping on another score than the study's metric."""

from __future__ import annotations

from markupsafe import escape
from sqlalchemy import select

from store.db import session_scope
from store.runs.models import Run
from tests.web.factories import make_ablation, make_run


def _count(group: int, validation: int, *, every: int = 1) -> int:
    """Give every `every`-th run of the group a counted overlap, as a fine-tune stores it."""
    overlap = {"validation": validation, "n_validation": 220, "test": 0, "n_test": 20}
    with session_scope() as session:
        runs = session.scalars(select(Run).where(Run.group_id == group).order_by(Run.id)).all()
        for run in runs[::every]:
            training = {**((run.result or {}).get("training") or {})}
            run.result = {
                **(run.result or {}),
                "training": training | {"pretrain_overlap": overlap},
            }
        return len(runs[::every])


def test_the_study_page_warns_with_the_count_of_pretraining_images(client):
    parent = make_run("pretrain")
    group = make_ablation(
        "freeze_encoder", {0: (14, 17), 1: (15, 16)}, group_params={"parent_run_id": parent}
    )
    counted = _count(group, 95)
    want = (
        f"In {counted} of {counted} runs counted, 95 of 220 validation images were training "
        f"images of pretrain run #{parent}: their validation scores, and the epochs early "
        "stopping kept, are optimistic."
    )
    data = client.get(f"/api/groups/{group}/ablation").json()
    assert want in data["warnings"]
    assert str(escape(want)) in client.get(f"/groups/{group}").text
    clean = make_ablation("freeze_encoder", {0: (14, 17), 1: (15, 16)})
    _count(clean, 0)
    assert client.get(f"/api/groups/{clean}/ablation").json()["warnings"] == []


def test_a_study_stopped_on_another_score_than_its_metric_says_so(client):
    def study(monitor: str) -> dict:
        group = make_ablation(
            "class_weights",
            {0: (14, 17), 1: (15, 16)},
            metric="balanced_accuracy",
            group_params={"base": {"early_stopping": {"monitor": monitor}}},
        )
        return client.get(f"/api/groups/{group}/ablation").json()

    old = study("val_loss")  # what studies did before the stopping rule
    assert old["stopping"]["monitor"] == "val_loss" and old["stopping"]["matches"] is False
    assert any(w.startswith("Early stopping watched val_loss while") for w in old["warnings"])
    fair = study("val_balanced_accuracy")
    assert fair["stopping"]["matches"] is True and fair["warnings"] == []
