"""Issue 23's statistics against reference computations: exact power (statsmodels' noncentral
t), the sd's chi-square interval, the resolution floor, the per-seed CMH (statsmodels'
StratifiedTable), the test-set bootstrap (scikit-learn's metrics, the analytic variance of
a mean) and Holm (statsmodels' multipletests)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from sklearn.metrics import balanced_accuracy_score, f1_score, recall_score
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from backend.compare import image_tests, power, stats
from backend.groups import bootstrap, chance, verdict
from jobspec.verdicts import Verdict

# --- point 4: exact power -------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10, 16])
@pytest.mark.parametrize("delta", [0.3, 1.0, 1.8])
def test_power_is_the_noncentral_t_power_statsmodels_computes(n, delta):
    reference = TTestPower().power(effect_size=delta, nobs=n, alpha=0.05, alternative="two-sided")
    assert power.power(delta * 2.0, 2.0, n) == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize("n", [2, 3, 4, 8, 20])
def test_the_detectable_effect_has_exactly_80_percent_power(n):
    reference = TTestPower().solve_power(nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
    assert power.mde(1.0, n) == pytest.approx(reference, rel=1e-6)
    assert power.power(power.mde(3.0, n), 3.0, n) == pytest.approx(0.8, abs=1e-9)


def test_the_old_formula_overstated_power_at_two_and_three_seeds():
    # (t_.975 + t_.8) · sd / √n, the old "80% power" effect: really 73% and 77% (issue 23).
    for n, really in ((2, 0.7308), (3, 0.7663)):
        old = scipy_stats.t.ppf(0.975, n - 1) + scipy_stats.t.ppf(0.8, n - 1)
        assert power.power(old / math.sqrt(n), 1.0, n) == pytest.approx(really, abs=1e-4)


def test_seeds_needed_is_the_first_n_whose_exact_power_reaches_80_percent():
    for sd, effect in ((2.0, 1.0), (1.0, 1.0), (10.0, 4.0), (1.0, 3.0)):
        n = power.seeds_needed(sd, effect)
        assert n is not None and n >= 2
        assert power.power(effect, sd, n) >= 0.8
        if n > 2:
            assert power.power(effect, sd, n - 1) < 0.8
    assert power.seeds_needed(2.0, 1.0) == 34  # statsmodels: nobs 33.37 -> 34
    assert power.seeds_needed(2.0, 0.01) is None and power.seeds_needed(0.0, 1.0) == 2


@given(
    sd=st.floats(0.1, 20.0),
    effect=st.floats(0.2, 40.0),
    n=st.integers(2, 12),
    scale=st.floats(0.5, 4.0),
)
@settings(max_examples=40, deadline=None)
def test_power_figures_are_monotone_and_scale_free(sd, effect, n, scale):
    assert power.mde(sd * scale, n) == pytest.approx(power.mde(sd, n) * scale, rel=1e-9)
    assert power.seeds_needed(sd * scale, effect * scale) == power.seeds_needed(sd, effect)
    assert power.power(effect, sd, n + 1) >= power.power(effect, sd, n) - 1e-12
    needed = power.seeds_needed(sd, effect)
    spread = power.seeds_range(sd, n, effect)
    fewest, most = (math.inf if v is None else v for v in (spread["fewest"], spread["most"]))
    assert fewest <= (needed or math.inf) <= most


def test_the_seed_range_comes_from_the_sds_chi_square_interval():
    low, high = power.sd_interval(2.0, 3)
    assert low == pytest.approx(2.0 * math.sqrt(2 / scipy_stats.chi2.ppf(0.975, 2)))
    assert high == pytest.approx(2.0 * math.sqrt(2 / scipy_stats.chi2.ppf(0.025, 2)))
    spread = power.seeds_range(2.0, 3, 1.0)
    assert spread["fewest"] == power.seeds_needed(low, 1.0)
    assert spread["most"] == power.seeds_needed(high, 1.0)


def test_a_two_seed_study_says_how_little_it_can_show():
    diff = stats.paired_difference([4.0, 6.0])
    text = verdict.two_seeds(diff, scipy_stats.t.ppf(0.975, 1))
    assert "Two seeds show little" in text and "t = 12.71" in text
    assert "8.98 times" not in text and "9.0 times" in text
    assert "0.45× to 32×" in text
    words = verdict.detectability(diff)
    assert "exact noncentral t" in words and "Rough guide" in words
    spread = diff["seeds_range"]  # sd 1.41 from 2 seeds: 0.63 to 45 points (95%)
    assert spread["sd_low"] == pytest.approx(math.sqrt(2) * math.sqrt(1 / 5.0239), rel=1e-4)
    assert f"between {spread['fewest']} and {spread['most']}" in words


# --- point 5: zero-width intervals -----------------------------------------------------


def test_seeds_that_all_agree_get_the_metrics_resolution_as_their_sd():
    # 1,000 test images: accuracy moves in steps of 0.1 points.
    step = chance.resolution("accuracy", {"a": 500, "b": 500}, {})
    assert step == pytest.approx(0.1)
    diff = stats.paired_difference([0.3, 0.3], resolution=step)
    assert diff["floored"] and diff["sd"] == 0.0 and diff["sd_used"] == pytest.approx(0.1)
    half = scipy_stats.t.ppf(0.975, 1) * 0.1 / math.sqrt(2)
    assert diff["low"] == pytest.approx(0.3 - half) and diff["high"] == pytest.approx(0.3 + half)
    assert diff["outcome"] == Verdict.INCONCLUSIVE  # not "helped" with p = 0
    reference = scipy_stats.ttest_1samp([0.3 - 0.1 / math.sqrt(2), 0.3 + 0.1 / math.sqrt(2)], 0)
    assert diff["t_test"]["p"] == pytest.approx(reference.pvalue) and diff["t_test"]["p"] > 0
    assert "resolution" in verdict.floor_note(diff)


def test_agreeing_seeds_without_a_known_resolution_need_more_seeds():
    diff = stats.paired_difference([20.0, 20.0])
    assert diff["outcome"] == Verdict.TOO_FEW and diff["no_spread"] and diff["t_test"] is None
    out = verdict.sentence(
        subject="X", arms=("a", "b"), metric="m", dataset="d", diff=diff, pairs=2, seeds=2
    )
    assert "add seeds" in out["text"] and "p = 0" not in out["text"]


def test_resolution_of_per_class_metrics_is_one_image_of_the_smallest_class():
    counts = {"a": 100, "b": 50, "c": 10, "d": 40}
    train = {"a": 500, "b": 400, "c": 20, "d": 300}
    assert chance.resolution("balanced_accuracy", counts, train) == pytest.approx(100 / (4 * 10))
    assert chance.resolution("minority_recall", counts, train) == pytest.approx(100 / 10)
    assert chance.resolution("accuracy", counts, train) == pytest.approx(0.5)
    assert chance.resolution("accuracy", {}, train) is None


@given(
    diffs=st.lists(st.integers(-200, 200), min_size=2, max_size=8),
    step=st.sampled_from([0.1, 0.5, 2.0]),
)
@settings(max_examples=60, deadline=None)
def test_no_interval_is_ever_narrower_than_the_resolution_allows(diffs, step):
    points = [d * step for d in diffs]
    diff = stats.paired_difference(points, resolution=step)
    n = len(points)
    least = scipy_stats.t.ppf(0.975, n - 1) * step / math.sqrt(n)
    assert diff["high"] - diff["low"] >= 2 * least - 1e-9
    assert diff["t_test"]["p"] > 0
    if not diff["floored"]:
        reference = scipy_stats.ttest_1samp(points, 0.0)
        assert diff["t_test"]["p"] == pytest.approx(reference.pvalue, rel=1e-9, abs=1e-300)


# --- point 3: the per-image tests ------------------------------------------------------


def test_the_seed_stratified_cmh_matches_statsmodels_one_table_per_seed():
    from statsmodels.stats.contingency_tables import StratifiedTable

    rng = np.random.default_rng(3)
    pairs = [(rng.random(40) < 0.55, rng.random(40) < 0.7) for _ in range(3)]
    tables = [[[int(b.sum()), int((~b).sum())], [int(t.sum()), int((~t).sum())]] for b, t in pairs]
    reference = StratifiedTable(np.array(tables, dtype=float).transpose(1, 2, 0))
    ours = image_tests.seed_cmh(pairs)
    assert ours["strata"] == 3 and ours["stratified_by"] == "seed"
    for corrected, chi2, p in ((False, "chi2", "p"), (True, "chi2_corrected", "p_corrected")):
        test = reference.test_null_odds(correction=corrected)
        assert ours[chi2] == pytest.approx(test.statistic)
        assert ours[p] == pytest.approx(test.pvalue)
    assert image_tests.pooled_mcnemar(pairs)["stratified_by"] == "seed and image"


def test_every_per_image_p_value_carries_the_sentence_that_it_does_not_test_the_factor():
    from backend.groups import evidence

    base, treat = np.array([0, 1, 2, 0]), np.array([0, 1, 1, 0])
    pairs = [
        {"difference": 1.0, "_correct": (base == base, treat == base), "_predicted": (base, treat)}
    ]
    pooled = evidence.pooled(pairs, [1.0], "accuracy")
    for name in ("mcnemar", "seed_cmh"):
        assert pooled[name]["not_the_factor"].startswith("Not a test of the factor")
        assert pooled[name]["tests"]
    assert "_correct" not in pairs[0] and "_predicted" not in pairs[0]
    assert "one stratum per seed)" not in pooled["rule"]


# --- point 6: the test-set bootstrap ---------------------------------------------------


def _predictions(rng, y, right):
    return np.where(rng.random(y.size) < right, y, (y + 1 + rng.integers(0, 3, y.size)) % 4)


def test_the_bootstrap_scores_each_metric_as_scikit_learn_does():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 300)
    y[:3] = [0, 1, 2]
    pred = _predictions(rng, y, 0.6)
    ones = np.ones((1, y.size))
    rare = [2, 3]
    expected = {
        "accuracy": np.mean(pred == y),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro"),
        "minority_recall": np.mean(recall_score(y, pred, labels=rare, average=None)),
    }
    for metric, value in expected.items():
        got = bootstrap.scores(metric, ones, y, pred, 4, rare)
        assert got[0] == pytest.approx(100 * value), metric


def test_the_bootstrap_spread_of_mean_accuracy_difference_is_the_analytic_one():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 500)
    pairs = [(_predictions(rng, y, 0.5), _predictions(rng, y, 0.6)) for _ in range(3)]
    means = bootstrap.mean_differences("accuracy", y, pairs, classes=4, replicates=2000)
    # per image: D_i = mean over seeds of (treatment right − baseline right); one shared draw
    per_image = np.mean([(t == y).astype(float) - (b == y) for b, t in pairs], axis=0) * 100
    assert means.mean() == pytest.approx(per_image.mean(), abs=0.2)
    assert means.std(ddof=1) == pytest.approx(per_image.std() / math.sqrt(y.size), rel=0.08)
    reference = scipy_stats.bootstrap(
        (per_image,), np.mean, n_resamples=2000, method="percentile", random_state=0
    ).confidence_interval
    found = bootstrap.interval(means, stats.paired_difference([1.0, 2.0, 3.0]))
    assert found["low"] == pytest.approx(reference.low, abs=0.6)
    assert found["high"] == pytest.approx(reference.high, abs=0.6)


@pytest.mark.parametrize("metric", ["accuracy", "balanced_accuracy", "macro_f1", "minority_recall"])
def test_the_fast_bootstrap_agrees_with_scoring_each_drawn_test_set(metric):
    rng = np.random.default_rng(11)
    y = rng.integers(0, 4, 400)
    pairs = [(_predictions(rng, y, 0.5), _predictions(rng, y, 0.65)) for _ in range(3)]
    fast = bootstrap.mean_differences(metric, y, pairs, classes=4, rare=[3], replicates=1500)
    # The slow way: draw image counts, score every network with scikit-learn's formulas.
    weights = rng.multinomial(y.size, np.full(y.size, 1 / y.size), size=1500).astype(float)
    slow = np.mean(
        [
            bootstrap.scores(metric, weights, y, t, 4, [3])
            - bootstrap.scores(metric, weights, y, b, 4, [3])
            for b, t in pairs
        ],
        axis=0,
    )
    observed = np.mean(
        [
            bootstrap.scores(metric, np.ones((1, y.size)), y, t, 4, [3])
            - bootstrap.scores(metric, np.ones((1, y.size)), y, b, 4, [3])
            for b, t in pairs
        ]
    )
    assert fast.mean() == pytest.approx(observed, abs=0.4)
    assert fast.std() == pytest.approx(slow.std(), rel=0.12)


def test_a_stored_prediction_past_the_classes_leaves_the_bootstrap_out():
    # A corrupt predictions file (a value of 10^9) must not size the one-hot matrices.
    from types import SimpleNamespace

    from backend.groups import evidence

    y = np.arange(40) % 4
    data = SimpleNamespace(class_names=["a", "b", "c", "d"], train_counts={})
    bad = y.copy()
    bad[0] = 10**9
    for found in ((y, bad), (bad, y), (y, y - 1)):
        pairs = [{"_predicted": found}]
        out = evidence.test_set(pairs, y, metric="accuracy", diff={"n": 1}, dataset=data)
        assert out == {"available": False, "why": "a stored prediction is not a class"}
    ok = evidence.test_set(
        [{"_predicted": (y, y)}], y, metric="accuracy", diff={"n": 1}, dataset=data
    )
    assert ok["available"] and ok["low"] == ok["high"] == 0


def test_the_combined_interval_adds_the_test_set_spread_in_quadrature():
    diff = stats.paired_difference([3.0, 4.0, 5.0])
    means = np.random.default_rng(0).normal(4.0, 0.5, 4000)
    found = bootstrap.interval(means, diff)
    se = math.sqrt(1.0 / 3 + found["sd"] ** 2)
    half = scipy_stats.t.ppf(0.975, 2) * se
    assert found["combined_low"] == pytest.approx(4.0 - half)
    assert found["combined_high"] == pytest.approx(4.0 + half)
    assert found["combined_outcome"] == Verdict.HELPED
    words = verdict.scope(diff, {"available": True, **found}, per_seed_split=False)
    assert "training randomness across seeds" in words and "one fixed split" in words
    assert "Test-set sampling alone" in words


# --- point 8: Holm ---------------------------------------------------------------------


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12))
@settings(max_examples=12, deadline=None)  # statsmodels' multipletests takes ~0.2 s a call
def test_holm_matches_statsmodels(pvalues):
    reference = multipletests(pvalues, alpha=0.05, method="holm")[1]
    assert stats.holm(pvalues) == pytest.approx(list(reference), abs=1e-12)


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1: 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.2
    assert stats.holm([0.2, 0.01, 0.04, 0.03]) == pytest.approx([0.2, 0.04, 0.09, 0.09])
