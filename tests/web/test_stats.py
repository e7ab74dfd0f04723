"""Statistics of the compare pages against hand-computed and scipy reference values."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from backend.compare import stats
from backend.compare.figures import downsample
from backend.groups.augmentation import band, verdict


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
    result = stats.mcnemar(a, b)
    assert (result["both"], result["only_a"], result["only_b"], result["neither"]) == (10, 1, 6, 3)
    assert result["p_exact"] == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    assert result["chi2"] == pytest.approx(16 / 7)
    assert result["p_corrected"] == pytest.approx(scipy_stats.chi2.sf(16 / 7, 1))


def test_mcnemar_without_discordant_samples_is_p_one():
    assert stats.mcnemar([True, False], [True, False])["p_exact"] == 1.0


def test_judge_reads_the_interval():
    assert stats.judge({"low": 0.5, "high": 3.0}) == stats.HELPED
    assert stats.judge({"low": -3.0, "high": -0.1}) == stats.HURT
    assert stats.judge({"low": -1.0, "high": 2.0}) == stats.UNCLEAR
    assert stats.judge({"low": None, "high": None}) == stats.TOO_FEW


def test_verdict_sentence_when_augmentation_helped():
    ci = stats.mean_ci([3.0, 4.0, 5.0])
    t_test = stats.paired_t([0.83, 0.84, 0.85], [0.80, 0.80, 0.80])
    out = verdict("cifar10", ci, t_test, 3, 3)
    assert out["outcome"] == "helped"
    assert out["text"].startswith(
        "Augmentation helped on cifar10: +4.0 points test accuracy (95% CI"
    )
    assert out["text"].endswith(f"paired t-test p = {t_test['p']:.3f}, 3 seeds).")


def test_verdict_with_too_few_pairs_says_so():
    out = verdict("demo", stats.mean_ci([2.0]), None, 1, 3)
    assert out["outcome"] == "too_few"
    assert "1 of 3" in out["text"]


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
