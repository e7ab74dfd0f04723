"""Small statistics for comparing runs: mean ± sd, t confidence intervals, paired t, McNemar."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

HELPED, HURT, UNCLEAR, TOO_FEW = "helped", "hurt", "unclear", "too_few"


def mean_sd(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof=1; None with fewer than two values)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return {"n": 0, "mean": None, "sd": None}
    sd = float(data.std(ddof=1)) if data.size > 1 else None
    return {"n": int(data.size), "mean": float(data.mean()), "sd": sd}


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean with a Student-t confidence interval (None bounds with fewer than two values)."""
    data = np.asarray(values, dtype=float)
    out = {**mean_sd(data), "level": level, "low": None, "high": None}
    if data.size < 2:
        return out
    half = stats.t.ppf(0.5 + level / 2, data.size - 1) * out["sd"] / math.sqrt(data.size)
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out


def paired_t(after: Sequence[float], before: Sequence[float]) -> dict | None:
    """Paired t-test of after vs before (scipy's ttest_rel); None with fewer than two pairs.

    When every difference is the same, t is infinite (p = 0) unless the differences are all
    zero (p = 1): scipy answers nan there, which says nothing useful on a page.
    """
    a, b = np.asarray(after, dtype=float), np.asarray(before, dtype=float)
    if a.size != b.size:
        raise ValueError("paired samples need the same length")
    if a.size < 2:
        return None
    diffs = a - b
    if np.allclose(diffs, diffs[0]):
        zero = bool(np.isclose(diffs[0], 0.0))
        return {
            "t": 0.0 if zero else math.copysign(math.inf, diffs[0]),
            "p": 1.0 if zero else 0.0,
            "df": int(a.size - 1),
        }
    result = stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue), "df": int(a.size - 1)}


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's test on paired per-sample correctness of two classifiers on the same set.

    b = only A right, c = only B right. Exact: two-sided binomial test of b out of b + c at
    1/2. Corrected: chi-square with Yates' continuity correction, (|b - c| - 1)^2 / (b + c).
    """
    a, b_ = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError("both classifiers must be scored on the same samples")
    only_a, only_b = int(np.sum(a & ~b_)), int(np.sum(~a & b_))
    both, neither = int(np.sum(a & b_)), int(np.sum(~a & ~b_))
    discordant = only_a + only_b
    out = {"both": both, "only_a": only_a, "only_b": only_b, "neither": neither, "n": int(a.size)}
    if discordant == 0:
        return {**out, "p_exact": 1.0, "chi2": 0.0, "p_corrected": 1.0}
    p_exact = float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    chi2 = max(abs(only_a - only_b) - 1, 0) ** 2 / discordant
    return {**out, "p_exact": p_exact, "chi2": chi2, "p_corrected": float(stats.chi2.sf(chi2, 1))}


def judge(ci: dict) -> str:
    """helped / hurt when the interval excludes 0, unclear when it spans it, too_few without one."""
    if ci.get("low") is None:
        return TOO_FEW
    if ci["low"] > 0:
        return HELPED
    if ci["high"] < 0:
        return HURT
    return UNCLEAR
