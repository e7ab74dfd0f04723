"""Statistics of the compare and study pages against hand-computed and reference values
(scipy, statsmodels, brute-force enumeration)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from backend.compare import image_tests, power, stats
from backend.compare.figures import downsample
from backend.groups import verdict
from backend.groups.figures import band
from jobspec.verdicts import Verdict


def test_mean_ci_matches_hand_computed_t_interval():
    ci = stats.mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, sd sqrt(5/3), t(0.975, 3) = 3.182446 -> half width 2.054255
    assert ci["mean"] == pytest.approx(2.5)
    assert ci["sd"] == pytest.approx(math.sqrt(5 / 3))
    assert ci["low"] == pytest.approx(2.5 - 2.054255, abs=1e-5)
    assert ci["high"] == pytest.approx(2.5 + 2.054255, abs=1e-5)


def test_mean_ci_with_one_value_has_no_interval():
    ci = stats.mean_ci([3.0])
    assert ci["mean"] == 3.0 and ci["sd"] is None and ci["low"] is None and ci["high"] is None


def test_paired_t_matches_scipy_and_hand_value():
    after, before = [0.82, 0.85, 0.80], [0.80, 0.81, 0.79]
    result = stats.paired_t(after, before)
    reference = scipy_stats.ttest_rel(after, before)
    # diffs .02 .04 .01: mean .023333, sd .015275 -> t = 2.6458 with 2 df
    assert result["t"] == pytest.approx(2.6458, abs=1e-3)
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p"] == pytest.approx(reference.pvalue)
    assert result["df"] == 2


def test_paired_t_needs_two_pairs_and_handles_constant_differences():
    assert stats.paired_t([0.8], [0.7]) is None
    same = stats.paired_t([0.8, 0.9], [0.7, 0.8])
    assert same["p"] == 0.0 and same["t"] == math.inf
    assert stats.paired_t([0.8, 0.9], [0.8, 0.9])["p"] == 1.0


def test_mcnemar_on_a_tiny_table():
    # 10 both right, 1 only A right, 6 only B right, 3 neither
    a = [True] * 10 + [True] + [False] * 6 + [False] * 3
    b = [True] * 10 + [False] + [True] * 6 + [False] * 3
    result = image_tests.mcnemar(a, b)
    assert (result["both"], result["only_a"], result["only_b"], result["neither"]) == (10, 1, 6, 3)
    assert result["p_exact"] == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    assert result["chi2"] == pytest.approx(16 / 7)
    assert result["p_corrected"] == pytest.approx(scipy_stats.chi2.sf(16 / 7, 1))


def test_mcnemar_without_discordant_samples_is_p_one():
    assert image_tests.mcnemar([True, False], [True, False])["p_exact"] == 1.0


def test_band_is_mean_min_max_per_epoch():
    points = band([[(1, 0.2), (2, 0.4)], [(1, 0.4)]])
    assert points[0] == {"step": 1, "mean": pytest.approx(0.3), "low": 0.2, "high": 0.4, "n": 2}
    assert points[1]["n"] == 1


def test_downsample_keeps_first_last_min_and_max():
    points = [(i, math.sin(i / 50)) for i in range(1, 5001)]
    points[1234] = (1235, -9.0)
    points[3210] = (3211, 9.0)
    kept = downsample(points)
    assert len(kept) <= 510
    assert kept[0] == points[0] and kept[-1] == points[-1]
    assert (1235, -9.0) in kept and (3211, 9.0) in kept
    assert downsample(points[:10]) == points[:10]


# --- ablation studies: verdicts, detectable effects, seed counts, pooled tests --------


def test_verdict_is_helped_when_the_whole_interval_is_above_zero():
    # d = +3, +4, +5: mean 4, sd 1, half width t(.975, 2) = 4.302653 / sqrt(3) = 2.484138
    diff = stats.paired_difference([3.0, 4.0, 5.0])
    assert diff["low"] == pytest.approx(4 - 2.484138, abs=1e-5)
    assert diff["outcome"] == Verdict.HELPED == "helped"


def test_verdict_is_hurt_when_the_whole_interval_is_below_zero():
    diff = stats.paired_difference([-20.0, -25.0, -15.0])
    assert diff["high"] == pytest.approx(-20 + 5 * 2.484138, abs=1e-4)  # sd 5
    assert diff["outcome"] == Verdict.HURT == "hurt"


def test_verdict_is_inconclusive_when_the_interval_contains_zero():
    # The reviewer's case: 3 seeds, the CI spans about -18 to +20 points.
    diff = stats.paired_difference([-6.0, 1.0, 8.0])
    assert diff["low"] < 0 < diff["high"]
    assert diff["outcome"] == Verdict.INCONCLUSIVE == "inconclusive"


def test_the_same_difference_on_every_seed_is_no_certainty_and_stays_json():
    # Without the metric's resolution: no spread to measure, too few (never p = 0).
    diff = stats.paired_difference([20.0, 20.0])
    assert diff["outcome"] == "too_few" and diff["no_spread"] and diff["mde"] is None
    assert diff["t_test"] is None and diff["seeds_needed"] is None
    json.dumps(diff, allow_nan=False)
    # With it (1 point: a 100-image test set), the step is the sd: t(.975, 1) · 1 / √2.
    floored = stats.paired_difference([20.0, 20.0], resolution=1.0)
    assert floored["floored"] and floored["low"] == pytest.approx(20 - 8.984644, abs=1e-5)
    assert floored["outcome"] == "helped" and 0 < floored["t_test"]["p"] < 0.05
    json.dumps(floored, allow_nan=False)


def test_verdict_needs_two_seed_pairs():
    assert stats.paired_difference([2.0])["outcome"] == Verdict.TOO_FEW
    assert stats.paired_difference([])["outcome"] == Verdict.TOO_FEW
    assert stats.judge({"low": None, "high": None}) == "too_few"


def test_minimum_detectable_effect_is_exact_noncentral_t():
    # statsmodels' TTestPower.solve_power(nobs=5, power=0.8) = 1.681997 standard deviations
    assert power.mde(2.0, 5) == pytest.approx(2 * 1.681997, abs=1e-5)
    # n = 3: 3.264044 sd (the old (t_.975 + t_.8) / √n = 3.096510 had only 77% power)
    assert power.mde(10.0, 3) == pytest.approx(32.64044, abs=1e-4)
    assert power.mde(0.0, 4) == 0.0
    assert power.mde(None, 1) is None and power.mde(3.0, 1) is None


def test_seeds_needed_against_exact_power():
    # sd 2, effect 1 (0.5 sd): statsmodels' solve_power gives nobs = 33.37 -> 34 seeds.
    assert power.seeds_needed(2.0, 1.0) == 34
    assert power.seeds_needed(10.0, 5.0) == 34  # only sd / effect matters
    # n = 5 detects exactly its own mde; a hair less needs a sixth seed.
    assert power.seeds_needed(2.0, power.mde(2.0, 5) + 1e-9) == 5
    assert power.seeds_needed(2.0, power.mde(2.0, 5) - 1e-4) == 6
    assert power.seeds_needed(0.0, 1.0) == 2  # no spread: the smallest study will do
    assert power.seeds_needed(2.0, 0.01) is None  # more than SEEDS_CAP
    assert power.seeds_needed(2.0, 0.0) is None and power.seeds_needed(None, 1.0) is None


def test_effect_defaults_to_the_observed_difference_or_the_mde():
    assert stats.paired_difference([3.0, 4.0, 5.0])["effect"] == pytest.approx(4.0)
    no_mean = stats.paired_difference([-1.0, 1.0])
    assert no_mean["effect"] == pytest.approx(no_mean["mde"]) and no_mean["seeds_needed"] == 2
    asked = stats.paired_difference([3.0, 4.0, 5.0], effect=1.0)
    assert asked["effect"] == 1.0 and asked["effect_asked"] is True
    # sd 1, effect 1: statsmodels' solve_power(effect_size=1) = 9.94 -> 10 seeds.
    assert asked["seeds_needed"] == 10


def _brute_force_sign_flip(diffs: list[int]) -> float:
    observed = abs(sum(diffs))
    patterns = list(itertools.product((1, -1), repeat=len(diffs)))
    sums = [sum(s * d for s, d in zip(signs, diffs, strict=True)) for signs in patterns]
    extreme = sum(abs(total) >= observed for total in sums)
    return extreme / len(patterns)


@pytest.mark.parametrize(
    "diffs", [[15, 5, -5], [3, 4, 5], [1, -1], [0, 0, 0], [7, -2, 3, 9, -4, 1], [2, 2, 2, -2, 6]]
)
def test_sign_flip_matches_brute_force_enumeration(diffs):
    result = stats.sign_flip([float(d) for d in diffs])
    assert result["exact"] and result["patterns"] == 2 ** len(diffs)
    assert result["p"] == pytest.approx(_brute_force_sign_flip(diffs))
    assert result["p_min"] == pytest.approx(2 / 2 ** len(diffs))


def test_sign_flip_over_many_seeds_samples_and_stays_in_range():
    result = stats.sign_flip([1.0] * 20)
    assert result["exact"] is False and 0 < result["p"] < 0.001


def test_pooled_mcnemar_matches_statsmodels_stratified_table():
    from statsmodels.stats.contingency_tables import StratifiedTable

    rng = np.random.default_rng(1)
    pairs = [(rng.random(30) < 0.6, rng.random(30) < 0.7) for _ in range(3)]
    # One 2x2 table per image per seed: rows baseline / treatment, columns right / wrong.
    tables = [
        [[int(a), 1 - int(a)], [int(b), 1 - int(b)]]
        for base, treat in pairs
        for a, b in zip(base, treat, strict=True)
    ]
    reference = StratifiedTable(np.array(tables, dtype=float).transpose(1, 2, 0))
    ours = image_tests.pooled_mcnemar(pairs)
    plain = reference.test_null_odds(correction=False)
    corrected = reference.test_null_odds(correction=True)
    assert ours["chi2"] == pytest.approx(plain.statistic)
    assert ours["p"] == pytest.approx(plain.pvalue)
    assert ours["chi2_corrected"] == pytest.approx(corrected.statistic)
    assert ours["p_corrected"] == pytest.approx(corrected.pvalue)
    assert (ours["only_baseline"], ours["only_treatment"]) == (19, 29)  # by hand: 48 discordant


def test_pooled_mcnemar_without_discordant_images_is_p_one():
    same = np.array([True, False, True])
    assert image_tests.pooled_mcnemar([(same, same)])["p"] == 1.0
    assert image_tests.pooled_mcnemar([]) is None


def test_verdict_sentence_names_subject_metric_ci_n_and_seeds():
    diff = stats.paired_difference([3.0, 4.0, 5.0])
    out = verdict.sentence(
        subject="Pretraining",
        arms=("from scratch", "pretrained"),
        metric="balanced accuracy",
        dataset="cifar10",
        diff=diff,
        pairs=3,
        seeds=3,
    )
    assert out["outcome"] == "helped" and out["word"] == "helped"
    assert out["text"].startswith(
        "Pretraining helped: +4.0 points balanced accuracy on cifar10 (pretrained minus "
        "from scratch; 95% CI +1.5 to +6.5; n = 3 seeds)."
    )
    assert "At n = 3 seeds" in out["text"] and "with 80% power" in out["text"]
    assert "is 3.3 points" in out["text"]  # exact: 3.264 sd
    assert "its power for an effect of 4.0 points is 91% (the observed difference:" in out["text"]
    assert diff["effect_from"] == "observed"
    asked = stats.paired_difference([3.0, 4.0, 5.0], effect=2.0)
    assert asked["effect_from"] == "asked" and "observed difference" not in verdict.detectability(
        asked
    )
    assert "Rough guide: about 3 seeds would detect an effect of 4.0 points" in out["text"]
    assert out["text"].endswith(
        "(between 3 and 22 over the sd's 95% interval, 0.5 to 6.3 points: an sd from 3 seeds "
        "is itself uncertain)."
    )


def test_verdict_sentence_when_inconclusive_and_too_few():
    words = dict(subject="The stacked encoder", arms=("single", "stacked"), metric="macro-F1")
    out = verdict.sentence(
        **words, dataset="d", diff=stats.paired_difference([-6.0, 1.0, 8.0]), pairs=3, seeds=3
    )
    assert out["text"].startswith("Inconclusive whether the stacked encoder helped: +1.0 points")
    out = verdict.sentence(
        **words, dataset="d", diff=stats.paired_difference([2.0]), pairs=1, seeds=3
    )
    assert out["outcome"] == "too_few" and "1 of 3" in out["text"]
