"""Exact power of the paired t-test over seeds (noncentral t), the smallest effect a study
can detect, the seeds an effect needs, and how uncertain that seed count is.

With n seeds, d_i = treatment − baseline and sd σ of d, the t statistic of mean d follows a
noncentral t with n − 1 degrees of freedom and noncentrality δ = E / (σ / √n); the power
to find E at two-sided α is P(|T| > t(1 − α/2, n − 1)) under it. The detectable effect is
the E whose power is exactly POWER (80%), found by root search; the seeds an effect needs
are the smallest n whose power reaches POWER. σ is only estimated, from few seeds: its
chi-square interval ((n − 1)s² / χ² bounds) turns the seed count into a range, which is the
honest form of that number (a rough guide, not a plan). Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from functools import lru_cache

ALPHA, POWER = 0.05, 0.8
SD_LEVEL = 0.95  # the chi-square interval of the sd behind the seed-count range
SEEDS_CAP = 1000  # seeds answers None ("more than this") beyond it


def _stats():
    """scipy.stats, imported on first use: it adds ~1 s and ~30 MB to the web's start."""
    from scipy import stats

    return stats


def power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """The exact probability that a two-sided paired t-test over n seeds finds a true mean
    difference `effect` when the differences have sd `sd` (noncentral t)."""
    if n < 2:
        raise ValueError("power needs at least 2 seeds")
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    return _power_standard(abs(effect) / sd, n, alpha)


def _power_standard(delta: float, n: int, alpha: float) -> float:
    """Power at a standardised effect delta = E / σ."""
    st = _stats()
    df = n - 1
    crit = float(st.t.ppf(1 - alpha / 2, df))
    nc = delta * math.sqrt(n)
    upper, lower = float(st.nct.sf(crit, df, nc)), float(st.nct.cdf(-crit, df, nc))
    # far in the tail scipy's noncentral t answers nan for what is 0 (or 1)
    upper = 1.0 if math.isnan(upper) else upper
    lower = 0.0 if math.isnan(lower) else lower
    return min(1.0, upper + lower)


@lru_cache(maxsize=4096)
def detectable_standard(n: int, alpha: float = ALPHA, target: float = POWER) -> float:
    """The standardised effect E / σ a paired t-test over n seeds finds with power `target`
    (exact, by root search on the noncentral t)."""
    if n < 2:
        raise ValueError("a detectable effect needs at least 2 seeds")
    st = _stats()
    guess = (st.t.ppf(1 - alpha / 2, n - 1) + st.t.ppf(target, n - 1)) / math.sqrt(n)
    high = max(1.0, 2 * float(guess))
    while _power_standard(high, n, alpha) < target:
        high *= 2
    from scipy.optimize import brentq

    return float(
        brentq(lambda d: _power_standard(d, n, alpha) - target, 0.0, high, xtol=1e-10, rtol=1e-12)
    )


def mde(sd: float | None, n: int) -> float | None:
    """The smallest true mean difference a paired t-test over n seeds detects with exactly
    80% power at two-sided α = 0.05, given the sd of the differences."""
    if sd is None or n < 2:
        return None
    return float(detectable_standard(n) * sd)


def seeds_needed(sd: float | None, effect: float | None, cap: int = SEEDS_CAP) -> int | None:
    """The smallest n ≥ 2 whose exact power for `effect` reaches 80%; None when even `cap`
    seeds would not do (or there is no sd or no positive effect to aim at)."""
    if sd is None or effect is None or effect <= 0:
        return None
    if sd <= 0:
        return 2
    target = effect / sd
    if detectable_standard(cap) > target:
        return None
    low, high = 2, cap  # detectable_standard falls as n grows: bisect for the first n
    while low < high:
        middle = (low + high) // 2
        if detectable_standard(middle) <= target:
            high = middle
        else:
            low = middle + 1
    return low


def sd_interval(sd: float | None, n: int, level: float = SD_LEVEL) -> tuple[float, float] | None:
    """The chi-square confidence interval of the true sd from a sample sd of n values."""
    if sd is None or n < 2:
        return None
    st = _stats()
    df = n - 1
    low = sd * math.sqrt(df / float(st.chi2.ppf(0.5 + level / 2, df)))
    high = sd * math.sqrt(df / float(st.chi2.ppf(0.5 - level / 2, df)))
    return low, high


def seeds_range(sd: float | None, n: int, effect: float | None) -> dict | None:
    """The seeds `effect` needs across the sd's own interval: fewest (at its lower bound)
    to most (at its upper bound; None = more than SEEDS_CAP)."""
    bounds = sd_interval(sd, n)
    if bounds is None or effect is None or effect <= 0:
        return None
    return {
        "fewest": seeds_needed(bounds[0], effect),
        "most": seeds_needed(bounds[1], effect),
        "sd_low": bounds[0],
        "sd_high": bounds[1],
        "level": SD_LEVEL,
    }
