"""Compare bolds a row's best only when one run (or seed group) has it alone: a tie, as the
page writes the values, bolds nobody (issue 22 point 12); its curves carry what the page's
controls need; the experiment report writes accuracies as percentages like every page."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backend.compare import stats
from tests.web.factories import finetune_result, make_run
from tests.web.test_compare import client  # noqa: F401 (the fixture)


def _finetune(name: str, accuracy: float, val_accuracy: list[float]) -> int:
    result = finetune_result(["cat", "dog"])
    result["evaluation"]["accuracy"] = accuracy
    return make_run(
        "finetune",
        name=name,
        params={"seed": len(name)},
        metrics={"finetune/val_accuracy": val_accuracy},
        result=result,
    )


def test_a_tie_for_the_best_bolds_no_run(client):  # noqa: F811
    a = _finetune("tie a", 0.80, [0.5, 0.7])
    b = _finetune("tie bb", 0.80, [0.6, 0.7])  # the same kept validation accuracy too
    c = _finetune("tie ccc", 0.60, [0.4, 0.9])
    data = client.get("/api/compare", params={"ids": f"{a},{b},{c}"}).json()
    tests = {row["key"]: row for row in data["tests"]}
    assert tests["accuracy"]["best_run"] is None  # 80.0% twice: no single best
    metrics = {row["key"]: row for row in data["metrics"]}
    assert metrics["finetune/val_accuracy"]["best_run"] == str(c)  # 90.0% alone
    pair = client.get("/api/compare", params={"ids": f"{a},{c}"}).json()
    assert {row["key"]: row for row in pair["tests"]}["accuracy"]["best_run"] == str(a)


def test_compare_curves_carry_wall_times_and_a_one_epoch_run_shows_its_value(client):  # noqa: F811
    a = _finetune("one epoch", 0.5, [0.55])
    b = _finetune("two epochs", 0.6, [0.5, 0.65])
    data = client.get("/api/compare", params={"ids": f"{a},{b}"}).json()
    chart = next(c for c in data["curves"] if c["metric"] == "val_accuracy")
    assert chart["label"]  # the panel picker's name for it
    one, two = chart["figure"]["data"]
    assert one["meta"] == two["meta"] == "curve"
    assert one["mode"] == "markers+text" and one["texttemplate"] == "%{y:.1%}"
    assert two["customdata"] == sorted(two["customdata"]) and two["customdata"][0] == 0


values = st.dictionaries(
    st.text("abc", min_size=1, max_size=3),
    st.floats(0, 1, allow_nan=False) | st.sampled_from([0.5, 0.8, 0.80001]),
    max_size=6,
)


@given(values, st.sampled_from(["min", "max"]), st.booleans())
def test_single_best_is_the_extreme_when_alone_and_none_on_a_tie(found, goal, percent):
    best = stats.single_best(found, goal=goal, percent=percent)
    shown = {key: stats.shown_value(v, percent=percent) for key, v in found.items()}
    if len(found) < 2:
        assert best is None
        return
    extreme = (min if goal == "min" else max)(found.values())
    top = [
        key for key, v in found.items() if shown[key] == stats.shown_value(extreme, percent=percent)
    ]
    if len(top) == 1:
        assert best == top[0] and found[best] == extreme
    else:
        assert best is None


def test_values_the_page_writes_in_full_are_not_a_tie_when_they_differ():
    # dom.js fmt.metric writes whole numbers and values from 1000 on in full: 1234.5 and
    # 1234.6 read differently on the page, so one of them is the best (4 digits would tie).
    assert stats.single_best({"a": 1234.5, "b": 1234.6}, goal="max", percent=False) == "b"
    assert stats.single_best({"a": 12345, "b": 12346}, goal="min", percent=False) == "a"
    assert stats.single_best({"a": 0.41231, "b": 0.41232}, goal="max", percent=False) is None
