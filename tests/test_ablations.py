"""Each ablation factor's two arms differ in that factor alone, and both are valid finetunes;
a study's seeds as a count or a list; the chance level of each study metric."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from backend.groups import chance
from jobspec import ablations
from jobspec.params import FinetuneConfig
from store.runs import seeds as study_seeds
from store.runs.schemas import AblationCreate, AugmentationStudyCreate

BASE = FinetuneConfig(encoder="stacked", epochs=3).model_dump(mode="json")
CONTEXT = ablations.Context(parent_kernel_sizes=(3, 5, 7))
CHANGED = {  # the fields each factor may change between its arms
    "augmentation": {"augment"},
    "pretraining": {"encoder", "architecture", "kernel_sizes"},
    "encoder": {"encoder"},
    "class_weights": {"class_weights"},
    "freeze_encoder": {"freeze_encoder"},
}


@pytest.mark.parametrize("name", list(ablations.FACTORS))
def test_the_arms_differ_in_the_factor_alone(name):
    factor = ablations.factor(name)
    baseline, treatment = (
        FinetuneConfig(**factor.params(BASE, arm.name, CONTEXT)).model_dump(mode="json")
        for arm in factor.arms
    )
    differ = {key for key in baseline if baseline[key] != treatment[key]}
    assert differ and differ <= CHANGED[name], differ
    for shared in ("seed", "split_seed"):
        assert baseline[shared] == treatment[shared]


def test_the_scratch_arm_copies_the_pretrains_kernel_sizes():
    scratch = ablations.factor("pretraining").params(BASE, "scratch", CONTEXT)
    config = FinetuneConfig(**scratch)
    assert config.encoder == "scratch" and config.model_architecture == "stacked"
    assert config.scratch_kernel_sizes == (3, 5, 7)


def test_a_class_weights_study_watches_a_metric_both_arms_can_share():
    for arm in ("off", "on"):
        params = ablations.factor("class_weights").params(BASE, arm, CONTEXT)
        assert params["early_stopping"]["monitor"] == "val_balanced_accuracy"
    chosen = {**BASE, "early_stopping": {**BASE["early_stopping"], "monitor": "val_macro_f1"}}
    kept = ablations.factor("class_weights").params(chosen, "on", CONTEXT)
    assert kept["early_stopping"]["monitor"] == "val_macro_f1"  # a fair choice stays


def test_the_default_study_metric_follows_the_imbalance():
    assert ablations.default_metric({"a": 100, "b": 100}) == "accuracy"
    assert ablations.default_metric({"a": 100, "b": 20}) == "balanced_accuracy"
    evaluation = {
        "accuracy": 0.8,
        "balanced_accuracy": 0.6,
        "per_class": {
            "a": {"recall": 0.9, "f1": 0.85, "support": 10},
            "b": {"recall": 0.3, "f1": 0.4, "support": 10},
            "c": {"recall": 0.0, "f1": 0.0, "support": 0},  # absent from the test set
        },
    }
    counts = {"a": 100, "b": 20, "c": 50}
    assert ablations.metric_value("macro_f1", evaluation, counts) == pytest.approx(0.625)
    assert ablations.metric_value("minority_recall", evaluation, counts) == pytest.approx(0.3)


# --- A study's seeds: a count or a list (store/runs/seeds.py). ---

SEED = st.integers(0, study_seeds.MAX_SEED)
SEPARATOR = st.sampled_from([",", ", ", " ", " , ", "\t", ",\n"])


def _study(seeds) -> AblationCreate:
    return AblationCreate(dataset="demo-tiny", factor="augmentation", seeds=seeds)


def _refusal(seeds) -> str:
    with pytest.raises(ValidationError) as caught:
        _study(seeds)
    (error,) = caught.value.errors()
    assert error["loc"] == ("seeds",)
    return error["msg"]


@given(st.integers(study_seeds.MIN_SEEDS, study_seeds.MAX_SEEDS_PARSED), st.booleans())
def test_a_bare_number_is_a_count_of_seeds_from_0(n, as_text):
    given_as = f"  {n} " if as_text else n
    assert _study(given_as).seeds == list(range(n))


@given(st.lists(SEED, min_size=2, max_size=30), SEPARATOR, st.booleans())
def test_two_or_more_numbers_are_the_seeds_themselves(seeds, separator, as_text):
    given_as = separator.join(map(str, seeds)) if as_text else seeds
    assert _study(given_as).seeds == seeds


@given(st.one_of(st.integers(-(10**6), 1), st.lists(SEED, max_size=1)))
def test_fewer_than_two_seeds_are_refused_saying_why(seeds):
    message = _refusal(seeds)
    assert "at least 2 seeds" in message and "one seed can never give a verdict" in message


@given(
    st.one_of(
        st.text(max_size=30).filter(lambda t: not all(c.isdigit() or c in ", \t\n" for c in t)),
        st.floats(allow_nan=True),
        st.booleans(),
        st.none(),
        st.lists(st.one_of(st.text(max_size=3), st.floats(), st.booleans()), min_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
)
def test_junk_is_a_422_on_seeds_never_an_error(junk):
    message = _refusal(junk)
    assert message and len(message) < 400


def test_the_parse_is_bounded_and_the_default_is_five():
    assert _study(study_seeds.DEFAULT_SEED_COUNT).seeds == [0, 1, 2, 3, 4]
    assert AblationCreate(dataset="demo-tiny", factor="augmentation").seeds == [0, 1, 2, 3, 4]
    assert AugmentationStudyCreate(dataset="demo-tiny", seeds="3").seeds == [0, 1, 2]
    assert "no study may have more than 1,000" in _refusal(10**12)
    assert "no study may have more than 1,000" in _refusal(list(range(1001)))
    assert "characters" in _refusal("1, " * 5000)
    assert "a seed is from 0 to" in _refusal([0, study_seeds.MAX_SEED + 1])
    assert "'-1' is not a seed" in _refusal("-1, 2")
    assert "'x' is not a seed" in _refusal("1, x")
    assert _study("3").seeds == [0, 1, 2]  # what the issue typed: 3 seeds, not seed 3
    assert _study([3, 4]).seeds == [3, 4]
    schema = AblationCreate.model_json_schema()["properties"]["seeds"]
    assert {s["type"] for s in schema["anyOf"]} == {"integer", "array", "string"}


# --- Chance level (backend/groups/chance.py), against scikit-learn's scores. ---

IMBALANCED_TEST = {"a": 60, "b": 20, "c": 20}


def _majority_scores(counts: dict[str, int]) -> dict[str, float]:
    """What always predicting the most common class scores, by scikit-learn."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    y_true = [name for name, n in counts.items() for _ in range(n)]
    y_pred = [max(counts, key=lambda name: counts[name])] * len(y_true)
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, average="macro", zero_division=0),
    }


@pytest.mark.parametrize("counts", [IMBALANCED_TEST, {f"c{i}": 1000 for i in range(10)}])
def test_the_majority_predictor_scores_what_scikit_learn_says(counts):
    for metric, expected in _majority_scores(counts).items():
        assert chance.levels(metric, counts)["majority"] == pytest.approx(expected)


def test_chance_levels_of_every_metric_by_hand():
    k = 3
    levels = {m: chance.levels(m, IMBALANCED_TEST) for m in ablations.STUDY_METRICS}
    assert levels["accuracy"] == pytest.approx({"majority": 0.6, "uniform": 1 / k})
    assert levels["balanced_accuracy"] == pytest.approx({"majority": 1 / k, "uniform": 1 / k})
    # guessing 1/3 each: class F1 = 2·p·(1/3) / (p + 1/3), p = 0.6, 0.2, 0.2
    uniform_f1 = (2 * 0.6 / 3 / (0.6 + 1 / 3) + 2 * (2 * 0.2 / 3 / (0.2 + 1 / 3))) / 3
    assert levels["macro_f1"] == pytest.approx({"majority": 0.25, "uniform": uniform_f1})
    assert levels["minority_recall"] == pytest.approx({"majority": 0.0, "uniform": 1 / k})
    assert chance.levels("accuracy", {"a": 0, "b": 0}) == {}  # no counts: no guard
    assert chance.bar("accuracy", {}, {}) is None


def test_the_bar_is_chance_plus_the_larger_of_two_standard_errors_and_a_tenth():
    # 100 test images, 60 in the top class: 2 · sqrt(0.6 · 0.4 / 100) = 9.8 points > 4
    bar = chance.bar("accuracy", IMBALANCED_TEST, IMBALANCED_TEST)
    assert bar["majority"] == pytest.approx(60) and bar["uniform"] == pytest.approx(100 / 3)
    assert bar["margin"] == pytest.approx(200 * (0.24 / 100) ** 0.5)
    assert bar["bar"] == pytest.approx(60 + bar["margin"])
    # 10 x 1,000 test images: the tenth of the way to 100% (9 points) is the larger
    balanced = {f"c{i}": 1000 for i in range(10)}
    bar = chance.bar("accuracy", balanced, balanced)
    assert bar["margin"] == pytest.approx(9.0) and bar["bar"] == pytest.approx(19.0)
    # the issue's models: 10-15% accuracy on 10 classes are at chance; 25% is not
    assert chance.at_chance([10.2, 11.0, 15.0, 12.4], bar)
    assert not chance.at_chance([10.2, 25.0], bar)
    assert not chance.at_chance([], bar)  # nothing finished: not judged
    # balanced accuracy of a class mean: sqrt(Σ p(1-p)/n_c) / K
    bar = chance.bar("balanced_accuracy", IMBALANCED_TEST, IMBALANCED_TEST)
    se = (sum((1 / 3) * (2 / 3) / n for n in IMBALANCED_TEST.values())) ** 0.5 / 3
    assert bar["margin"] == pytest.approx(200 * se)
